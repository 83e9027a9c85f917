"""Every Triton kernel compiles for an H100/H200-class GPU (sm_90), checked without a GPU: no variant spills
registers to local memory, and every product kernel (tl.dot) runs on tensor cores."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_triton_kernels_compile_for_sm90_without_spills_on_tensor_cores():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    script = os.path.join(ROOT, "tests", "sm90_compile.py")
    # About 100 variants: a few minutes on a shared 2-core machine.
    done = subprocess.run([sys.executable, script, "--resources"], capture_output=True, text=True, env=env,
                          timeout=1800)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    summary = done.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"sm_90: (\d+) variants compiled, (\d+) with spills, (\d+) of (\d+) product kernels on "
                         r"tensor cores", summary)
    assert match, summary
    compiled, spilling, on_tensor_cores, products = map(int, match.groups())
    listing = "\n".join(line for line in done.stdout.splitlines() if line.startswith("ok "))
    assert compiled == len(listing.splitlines()) and products > 0, done.stdout[-4000:]
    assert spilling == 0, "variants that spill:\n" + "\n".join(
        line for line in listing.splitlines() if not re.search(r"spill +0 B", line))
    assert on_tensor_cores == products, "product kernels off the tensor cores:\n" + "\n".join(
        line for line in listing.splitlines() if line.endswith("tensor cores NONE"))
