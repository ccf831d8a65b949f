"""In-memory fakes of the ports in `segmind_proxy.domain.ports`, one typed set for every test that needs one.

Each keeps the semantics of the adapter it stands in for (conditional updates, budget refusals, lease expiry, a set
whose first image is written last) so that a flow tested on them behaves as it does over AWS; tests/adapters/
test_contracts.py runs the same checks on a fake and on its adapter under moto. Every fake can be made to fail
(`unreachable("write")`, ...) as its service would when unreachable."""

from tests.fakes.clock import FakeClock
from tests.fakes.deferrer import FakeDeferrer
from tests.fakes.errors import conditional_check_failed, outage
from tests.fakes.idempotency import FakeIdempotency
from tests.fakes.images import FakeImageStore
from tests.fakes.jobs import FakeJobQueue, FakeJobStore
from tests.fakes.leases import FakeLeases
from tests.fakes.ledger import FakeLedger
from tests.fakes.tenants import FakeTenants
from tests.fakes.upstream import FakeUpstream
from tests.fakes.webhooks import FakeWebhooks

__all__ = [
    "FakeClock",
    "FakeDeferrer",
    "FakeIdempotency",
    "FakeImageStore",
    "FakeJobQueue",
    "FakeJobStore",
    "FakeLeases",
    "FakeLedger",
    "FakeTenants",
    "FakeUpstream",
    "FakeWebhooks",
    "conditional_check_failed",
    "outage",
]
