#!/usr/bin/env bash
# The GPU checks of dstcl, in about 10 minutes on one CUDA device (docs/reliability.md, "The GPU check"):
#   1. the tests that skip without CUDA;
#   2. 2-task runs on the offline digits data in fp32, bf16 and fp16: completed, BWT exactly 0;
#   3. a small ResNet-18 on synthetic CIFAR-10 in bf16: completed, BWT exactly 0;
#   4. determinism and resume: two uninterrupted fp32 runs are bit-identical, and a run killed mid-task
#      (DSTCL_KILL_AT) then resumed (dstcl run --resume) ends bit-identical to them (accuracy matrix, weights);
#   5. benchmarks/end_to_end.py --device cuda at a small size.
# One line per check (PASS/FAIL and what); exit status 1 if any check failed. Without CUDA it says so and
# exits 0. Run from anywhere: scripts/device_check.sh  (PYTHON=... picks the interpreter; the logs stay in
# the folder printed at the end; DEVICE_CHECK_DEVICE=cpu runs the same checks on the CPU, without fp16 and
# the CUDA tests, to try the script itself).
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DEVICE=${DEVICE_CHECK_DEVICE:-cuda}
BUDGET_S=${DEVICE_CHECK_BUDGET_S:-570}  # leaves a margin inside the 10 minutes

if [ "$DEVICE" = cuda ] && [ "$("$PYTHON" -c 'import torch; print(torch.cuda.is_available())' 2>/dev/null)" != True ]; then
    echo "device_check: no CUDA device found (torch.cuda.is_available() is not True); the GPU checks were skipped."
    exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dstcl-device-check.XXXXXX")
FAILED=0
START=$SECONDS

pass() { echo "PASS  $*"; }
fail() { echo "FAIL  $*"; FAILED=1; }

# limit SECONDS_WANTED: the seconds a step may take, within what is left of the budget (0: none left)
limit() {
    local left=$((BUDGET_S - (SECONDS - START)))
    if [ "$left" -lt 10 ]; then echo 0; elif [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}

# dstcl_run SECONDS LOG ARGS...: a dstcl run under a time limit, output in LOG; its exit status
dstcl_run() {
    local seconds log
    seconds=$(limit "$1"); log=$2; shift 2
    if [ "$seconds" -eq 0 ]; then echo "the time budget ran out before this step" >"$log"; return 124; fi
    timeout "$seconds" "$PYTHON" -m dstcl.cli.main run "$@" --device "$DEVICE" --threads 2 --no-progress >"$log" 2>&1
}

# metric RUN_DIR EXPRESSION: a value of the run's metrics.json (m is the parsed file), or "missing"
metric() {
    "$PYTHON" -c 'import json, sys; m = json.load(open(sys.argv[1] + "/metrics.json")); print(eval(sys.argv[2]))' \
        "$1" "$2" 2>/dev/null || echo missing
}

# same_run A B: exit 0 when two run folders hold bit-identical results (accuracy matrix, state, weights)
same_run() {
    "$PYTHON" - "$1" "$2" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np
import torch

def leaves(x, path=""):
    """(path, bytes or value) of every array and plain value in a nested payload, in order."""
    if torch.is_tensor(x):
        x = x.detach().cpu().contiguous()
        yield path, (str(x.dtype), tuple(x.shape), x.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(x, np.ndarray):
        yield path, (str(x.dtype), x.shape, np.ascontiguousarray(x).tobytes())
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from leaves(v, f"{path}/{k}")
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            yield from leaves(v, f"{path}/{i}")
    else:
        yield path, x

a, b = (Path(p) for p in sys.argv[1:3])
ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
problems = [] if ma["accuracy_matrix"] == mb["accuracy_matrix"] else ["accuracy_matrix"]
for name in ("state.pt", "weights.pt", "buffers.pt"):
    if (a / name).exists() or (b / name).exists():
        payloads = [torch.load(d / name, map_location="cpu", weights_only=False) for d in (a, b)]
        if list(leaves(payloads[0])) != list(leaves(payloads[1])):
            problems.append(name)
print(", ".join(problems) or "identical")
sys.exit(1 if problems else 0)
EOF
}

# 1. the tests that skip without CUDA
if [ "$DEVICE" = cuda ]; then
    files=$(grep -l "skipif(not torch.cuda.is_available()" tests/test_*.py)
    seconds=$(limit 150)
    if [ "$seconds" -gt 0 ] && timeout "$seconds" "$PYTHON" -m pytest -q -rs -k cuda $files >"$WORK/cuda-tests.log" 2>&1 \
        && ! grep -q "skipped" "$WORK/cuda-tests.log"; then
        pass "CUDA tests ($(tail -n 1 "$WORK/cuda-tests.log"); $(echo $files))"
    else
        fail "CUDA tests: $(tail -n 1 "$WORK/cuda-tests.log" 2>/dev/null) (log: $WORK/cuda-tests.log)"
    fi
fi

# 2. digits, 2 tasks, each precision: completed and BWT exactly 0 (isolation holds in every arithmetic)
precisions="fp32 bf16 fp16"
[ "$DEVICE" = cuda ] || precisions="fp32 bf16"
for precision in $precisions; do
    run="$WORK/digits-$precision"
    dstcl_run 90 "$run.log" --tasks 2 --epochs 3 --precision "$precision" --checkpoint-budget 1 --run-dir "$run"
    status=$?
    bwt=$(metric "$run" 'm["bwt"]'); state=$(metric "$run" 'm["status"]'); acc=$(metric "$run" 'round(m["acc"], 2)')
    if [ "$status" -eq 0 ] && [ "$state" = completed ] && [ "$(metric "$run" 'm["bwt"] == 0')" = True ]; then
        pass "digits 2 tasks on $DEVICE in $precision: completed, ACC $acc %, BWT exactly 0"
    else
        fail "digits 2 tasks on $DEVICE in $precision: exit $status, status $state, BWT $bwt (log: $run.log)"
    fi
done

# 3. a small ResNet-18 on synthetic CIFAR-10 (the tests' generator, the real file format), bf16
run="$WORK/resnet18"
if "$PYTHON" -c 'import sys; sys.path.insert(0, "tests"); import datagen; datagen.write_cifar(sys.argv[1], "cifar10", 50, 10, num_classes=4)' \
        "$WORK/cifar" >"$run.log" 2>&1; then
    dstcl_run 120 "$run.log" --dataset cifar10 --data-dir "$WORK/cifar" --no-download --num-classes 4 --tasks 2 \
        --backbone resnet18 --width 16 --epochs 2 --batch-size 32 --update-frequency 4 --precision bf16 --run-dir "$run"
    status=$?
else
    status=1
fi
bwt=$(metric "$run" 'm["bwt"]'); state=$(metric "$run" 'm["status"]')
if [ "$status" -eq 0 ] && [ "$state" = completed ] && [ "$(metric "$run" 'm["bwt"] == 0')" = True ]; then
    pass "resnet18 (width 16) on synthetic CIFAR-10, 2 tasks, bf16 on $DEVICE: completed, BWT exactly 0"
else
    fail "resnet18 on synthetic CIFAR-10, bf16 on $DEVICE: exit $status, status $state, BWT $bwt (log: $run.log)"
fi

# 4. determinism (two uninterrupted runs) and resume (killed mid-task 1, resumed) against digits-fp32
reference="$WORK/digits-fp32"
run="$WORK/repeat"
dstcl_run 90 "$run.log" --tasks 2 --epochs 3 --precision fp32 --checkpoint-budget 1 --run-dir "$run"
if [ $? -eq 0 ] && verdict=$(same_run "$reference" "$run" 2>&1); then
    pass "two uninterrupted fp32 runs on $DEVICE are bit-identical (accuracy matrix, state, weights)"
else
    fail "two uninterrupted fp32 runs on $DEVICE differ: ${verdict:-the run failed} (logs: $reference.log, $run.log)"
fi
run="$WORK/killed"
(DSTCL_KILL_AT=training_step:100 dstcl_run 90 "$run.log" --tasks 2 --epochs 3 --precision fp32 --checkpoint-budget 1 \
    --run-dir "$run") 2>/dev/null  # the subshell keeps bash's "Killed" notice quiet
killed=$?
seconds=$(limit 90)
if [ "$killed" -ne 137 ]; then
    fail "resume on $DEVICE: the run was not killed at training_step:100 (exit $killed; log: $run.log)"
elif [ "$seconds" -eq 0 ] || ! timeout "$seconds" "$PYTHON" -m dstcl.cli.main run --resume "$run" >>"$run.log" 2>&1; then
    fail "resume on $DEVICE: dstcl run --resume failed (log: $run.log)"
elif verdict=$(same_run "$reference" "$run" 2>&1); then
    pass "killed at training_step:100 and resumed on $DEVICE: bit-identical to the uninterrupted run"
else
    fail "killed and resumed on $DEVICE: differs from the uninterrupted run in $verdict (log: $run.log)"
fi

# 5. the end-to-end benchmark on the device, small
seconds=$(limit 200)
if [ "$seconds" -gt 0 ] && timeout "$seconds" "$PYTHON" benchmarks/end_to_end.py --device "$DEVICE" --tasks 2 --width 16 \
        --precision fp32 --threads 2 >"$WORK/end_to_end.log" 2>&1; then
    pass "benchmarks/end_to_end.py --device $DEVICE --tasks 2 --width 16: $(grep 'wall time ratio' "$WORK/end_to_end.log" | tail -n 1)"
else
    fail "benchmarks/end_to_end.py --device $DEVICE: $(tail -n 1 "$WORK/end_to_end.log") (log: $WORK/end_to_end.log)"
fi

echo "device_check: $((SECONDS - START)) s on $DEVICE; logs in $WORK"
exit $FAILED
