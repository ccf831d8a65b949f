// Compiles every .py under a directory to CPython 3.13 bytecode (__pycache__/*.cpython-313.pyc), for the Lambda
// python3.13 runtime. Its file system is read-only, so a package shipped without bytecode compiles each module it
// imports on every cold start. This machine's Python is older and bytecode is per minor version, so the compiler
// is Pyodide's CPython 3.13 (WebAssembly, from the npm registry); bytecode does not depend on the platform.
// Unchecked hash-based .pyc: used without comparing source timestamps, which zip archives round.
import path from "node:path";
import { loadPyodide } from "pyodide";

const EXPECTED = "3.13";
const target = process.argv[2];
if (!target) {
  console.error("usage: node compile.mjs DIRECTORY");
  process.exit(2);
}
const pyodide = await loadPyodide();
pyodide.FS.mkdirTree("/target");
pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: path.resolve(target) }, "/target");
const [version, ok, count] = pyodide
  .runPython(`
import compileall, pathlib, py_compile, sys
ok = compileall.compile_dir(
    "/target", quiet=1, workers=1, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
)
(f"{sys.version_info[0]}.{sys.version_info[1]}", ok, sum(1 for _ in pathlib.Path("/target").rglob("*.cpython-313.pyc")))
`)
  .toJs();
if (version !== EXPECTED || !ok) {
  console.error(`bytecode: compiling ${target} failed (Python ${version})`);
  process.exit(1);
}
console.log(`bytecode: ${count} modules compiled for Python ${version} in ${target}`);
