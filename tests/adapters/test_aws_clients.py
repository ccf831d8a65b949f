"""Clients are built once per container, from one session, even when two threads ask for the first time together."""

import threading
from concurrent.futures import ThreadPoolExecutor

import boto3

from segmind_proxy.adapters import aws_clients, idempotency, upstream_key


def test_every_client_comes_from_one_session(aws, monkeypatch):
    made = []
    original = boto3.session.Session.__init__

    def counting(self, *args, **kwargs):
        made.append(self)
        original(self, *args, **kwargs)

    aws_clients.session.cache_clear()
    clients = (aws_clients.s3, aws_clients.dynamodb, aws_clients.dynamodb_client, aws_clients.sqs)
    for client in (*clients, aws_clients.secrets_manager, upstream_key.secrets, idempotency._persistence):
        client.cache_clear()
    monkeypatch.setattr(boto3.session.Session, "__init__", counting)
    for client in clients:
        client()
    upstream_key.secrets()  # Powertools' providers, over our clients rather than sessions of their own
    idempotency._persistence()
    assert len(made) == 1  # a session per client would load botocore's data files once per client


def test_threads_asking_at_once_share_one_client(aws):
    aws_clients.s3.cache_clear()
    start = threading.Barrier(6)

    def first_use():
        start.wait()
        return aws_clients.s3()

    with ThreadPoolExecutor(6) as pool:
        clients = list(pool.map(lambda _: first_use(), range(6)))
    assert all(client is clients[0] for client in clients)
