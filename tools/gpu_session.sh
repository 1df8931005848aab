#!/usr/bin/env bash
# One GPU-machine session for issues 4/5 (run there from the repository root, with .gpu/ from
# tools/device_bundle.sh carried): the CUDA tests, a random-weight LLaVA-NeXT-Mistral-7B checkpoint,
# `llava bench` on workload W1 (free memory and a 22 GiB cap), `llava run` on the 7B, and the
# transformers baseline on the same card. Logs and JSON go to $OUT (default /tmp/gpu-out).
#   bash tools/gpu_session.sh tests|bench|serve|chat|mixed|hf|prof|fp8|fp8acc|all [images]
set -u
# the bundled Debian libraries only for our binaries (a global LD_LIBRARY_PATH breaks the machine's curl)
gpu() { local b=$1; shift; LD_LIBRARY_PATH=$PWD/.gpu/lib:${LD_LIBRARY_PATH:-} ".gpu/$b" "$@"; }
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
what=${1:-all}
N=${2:-192}
CK=/tmp/r7b
IMG=/tmp/w1-jpegs
# serve stages: the openai wheels (.gpu-wheels: the GPU machine has no network), the checkpoint, W1
# JPEGs, then `llava serve` on port 8765 in the background, started directly (not through gpu()) so
# that $srv is llava itself and SIGTERM reaches it (graceful shutdown, rc 0); waits for /health
start_serve() {
    [ -d .gpu-wheels ] && python3 -m pip install -q --no-index --find-links .gpu-wheels openai >"$OUT/pip.log" 2>&1
    [ -f $CK/config.json ] || python3 tools/make_random_checkpoint.py --out $CK >"$OUT/ckpt.log" 2>&1
    [ -d $IMG ] || gpu llava bench -m $CK --images 64 --images-dir $IMG --gemm-size 0 >/dev/null 2>&1
    LD_LIBRARY_PATH=$PWD/.gpu/lib:${LD_LIBRARY_PATH:-} .gpu/llava serve -m $CK --port 8765 --device cuda ${SERVE_ARGS:-} >"$OUT/$1" 2>&1 &
    srv=$!
    for _ in $(seq 1 120); do curl -sf http://127.0.0.1:8765/health >/dev/null && break; sleep 1; done
}
# show_load FILE...: the scalar fields and latencies of bench/serve_load.py --json results
show_load() {
    python3 - "$@" <<'PY'
import json, sys
for p in sys.argv[1:]:
    try:
        j = json.load(open(p))
    except Exception as e:
        print(p, "unreadable", e); continue
    print(p.split("/")[-1], {k: j[k] for k in j if not isinstance(j[k], (list, dict))}, j.get("latency_ms"))
PY
}
# the 30 W1 labels, one a line, for `llava classify --labels`
write_w1_labels() {
    printf '%s\n' Pool Exterior Bar Lobby Room Suite Bathroom Restaurant "Breakfast Area" Gym Spa Sauna "Meeting Room" \
        Ballroom Terrace/Patio Balcony View Garden Beach Parking Reception Kitchen "Living Room" "Kids Club" \
        "Business Center" Elevator Hallway "Facade at Night" "Aerial View" Other >/tmp/w1-labels.txt
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
if [ "$what" = tests ] || [ "$what" = all ]; then
    gpu test_ops >"$OUT/test_ops.log" 2>&1; echo "test_ops rc=$?"; tail -n 3 "$OUT/test_ops.log"
    gpu test_gpu_model >"$OUT/test_gpu_model.log" 2>&1; echo "test_gpu_model rc=$?"
    grep -E "^(FAIL|RESULT)|scheduler" "$OUT/test_gpu_model.log" | head -n 20
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
    [ -f $CK/config.json ] || { t=$(date +%s); python3 tools/make_random_checkpoint.py --out $CK >"$OUT/ckpt.log" 2>&1; echo "checkpoint rc=$? $(( $(date +%s) - t )) s"; }
    # W1 end to end, all memory; then at a 22 GiB cap (A10G-class)
    ( while :; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; sleep 0.5; done ) >"$OUT/smi.txt" &
    smi=$!
    gpu llava bench -m $CK --images "$N" --images-dir $IMG --threads 12 --price-per-hour 2.5 --json \
        >"$OUT/bench_w1.json" 2>"$OUT/bench_w1.err"; echo "bench rc=$?"
    kill $smi; sort -n "$OUT/smi.txt" | tail -n 1 | sed 's/^/nvidia-smi peak MiB (bench, no cap): /'
    ( while :; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; sleep 0.5; done ) >"$OUT/smi22.txt" &
    smi=$!
    gpu llava bench -m $CK --images "$N" --threads 12 --gpu-mem-limit 22 --json \
        >"$OUT/bench_w1_22g.json" 2>"$OUT/bench_w1_22g.err"; echo "bench 22GiB rc=$?"
    kill $smi; sort -n "$OUT/smi22.txt" | tail -n 1 | sed 's/^/nvidia-smi peak MiB (bench, 22 GiB cap): /'
    cat "$OUT/bench_w1.err" "$OUT/bench_w1_22g.err" | tail -n 6
    python3 - "$OUT/bench_w1.json" "$OUT/bench_w1_22g.json" <<'PY'
import json, sys
for p in sys.argv[1:]:
    try:
        j = json.load(open(p))
    except Exception as e:
        print(p, "unreadable", e); continue
    print(p.split("/")[-1], "images/s %.3f" % j["images_per_s"], "TFLOP/s %.1f" % j["achieved_tflops"],
          "ceiling %s" % j["gemm_ceiling_tflops"], "pct %s" % j["pct_of_ceiling"], "batch %.2f" % j["mean_batch"],
          "p50 %.1f ms p99 %.1f ms" % (j["latency_ms"]["p50"], j["latency_ms"]["p99"]), "stages", j["stages_ms_per_image"],
          "gpu", j.get("gpu_memory"), "check", j["check_max_prob_diff"], "step_tokens", j.get("step_tokens"))
PY
    # generation on the 7B (run): the KV cache from free memory
    gpu llava run -m $CK -i "$(ls $IMG/*.jpg | head -n 1)" -p "What is shown in this image?" -n 16 --device cuda --json \
        >"$OUT/run7b.json" 2>"$OUT/run7b.err"; echo "run 7B rc=$?"; tail -n 2 "$OUT/run7b.err"
    python3 -c "import json;j=json.load(open('$OUT/run7b.json'));print({k:j[k] for k in j if k in ('prompt_tokens','n_generated','timings','finish_reason')})" 2>&1 | head -c 600; echo
fi
# --quantization fp8 against bf16 on W1: images/s of each, then `llava classify` on the same JPEGs
# both ways and how often the top-1 label agrees (with random weights the 30 labels' probabilities
# are close, so this is a harder test than a trained model's)
if [ "$what" = fp8 ]; then
    [ -f $CK/config.json ] || python3 tools/make_random_checkpoint.py --out $CK >"$OUT/ckpt.log" 2>&1
    for q in none fp8; do
        gpu llava bench -m $CK --device cuda --images "$N" --images-dir $IMG --threads 12 --price-per-hour 2.5 \
            --quantization $q --json >"$OUT/bench_$q.json" 2>"$OUT/bench_$q.err"
        echo "bench $q rc=$?"; tail -n 2 "$OUT/bench_$q.err"
        python3 -c "import json;j=json.load(open('$OUT/bench_$q.json'));print({k:j[k] for k in j if not isinstance(j[k],(list,dict))})" 2>&1 | head -c 1500; echo
    done
    write_w1_labels
    [ "${FP8_CLASSIFY:-1}" = 0 ] || for q in none fp8; do
        gpu llava classify -m $CK --device cuda --labels /tmp/w1-labels.txt $IMG -o "$OUT/cls_$q.jsonl" --top-k all \
            --overwrite --quantization $q >"$OUT/cls_$q.log" 2>&1
        echo "classify $q rc=$?"; tail -n 2 "$OUT/cls_$q.log"
    done
    [ "${FP8_CLASSIFY:-1}" = 0 ] || python3 tools/compare_top1.py "$OUT/cls_none.jsonl" "$OUT/cls_fp8.jsonl"
fi
# FP8's error against transformers in fp32 (tools/hf_label_probs.py) on N W1 images: `llava classify`
# in bf16, in FP8, and with only some projections in FP8 (LLAVA_FP8_OPS), each compared with
# tools/compare_top1.py; then transformers in bf16 against its own fp32
if [ "$what" = fp8acc ]; then
    [ -f $CK/config.json ] || python3 tools/make_random_checkpoint.py --out $CK >"$OUT/ckpt.log" 2>&1
    [ -d $IMG ] || gpu llava bench -m $CK --device cuda --images "$N" --images-dir $IMG --gemm-size 0 >/dev/null 2>&1
    ls $IMG | sort | head -n "$N" | sed "s|^|$IMG/|" >/tmp/w1-list.txt
    write_w1_labels
    HF=${FP8ACC_HF:-1} # 0: no transformers runs (each variant against llava bf16 only)
    [ "$HF" = 0 ] || { timeout 300 python3 tools/hf_label_probs.py -m $CK --images $(cat /tmp/w1-list.txt) -n "$N" \
        --dtype fp32 -o "$OUT/hf_fp32.jsonl" 2>"$OUT/hf_fp32.err"; echo "hf fp32 rc=$?"; tail -n 2 "$OUT/hf_fp32.err"; }
    for v in ${FP8_VARIANTS:-bf16 default gu,down}; do
        q=fp8; [ $v = bf16 ] && q=none
        LLAVA_FP8_OPS=$([ $v = default ] || [ $v = bf16 ] || echo $v) gpu llava classify -m $CK --device cuda \
            --labels /tmp/w1-labels.txt /tmp/w1-list.txt -o "/tmp/cls_$v.jsonl" --top-k all --overwrite --quantization $q \
            >"/tmp/cls_$v.log" 2>&1
        echo "== llava $v (rc=$?): $(tail -n 1 /tmp/cls_$v.log | grep -o '[0-9.]* images/s')"
        [ "$HF" = 0 ] || python3 tools/compare_top1.py "$OUT/hf_fp32.jsonl" "/tmp/cls_$v.jsonl"
        [ $v = bf16 ] || python3 tools/compare_top1.py "/tmp/cls_bf16.jsonl" "/tmp/cls_$v.jsonl" | sed 's/^/  vs llava bf16: /'
    done
    [ "$HF" = 0 ] || { timeout 200 python3 tools/hf_label_probs.py -m $CK --images $(cat /tmp/w1-list.txt) -n "$N" \
        --dtype bf16 -o "$OUT/hf_bf16.jsonl" 2>"$OUT/hf_bf16.err"; echo "== transformers bf16 rc=$?"
        tail -n 1 "$OUT/hf_bf16.err"; python3 tools/compare_top1.py "$OUT/hf_fp32.jsonl" "$OUT/hf_bf16.jsonl"; }
    tar czf "$OUT/cls.tgz" -C /tmp $(cd /tmp && ls cls_*.jsonl cls_*.log)
fi
if [ "$what" = prof ]; then
    # device time per op kind (timed events around every op; the steps run one at a time)
    [ -f $CK/config.json ] || python3 tools/make_random_checkpoint.py --out $CK >"$OUT/ckpt.log" 2>&1
    LLAVA_PROFILE=1 gpu llava bench -m $CK --images 64 --threads 12 --gemm-size 0 ${PROF_ARGS:-} 2>&1 |
        grep -A13 LLAVA_PROFILE
    [ "${PROF_OPS:-1}" = 0 ] || gpu test_ops --bench-only 2>&1 | grep -E "^TIME" | cut -c1-120
fi
if [ "$what" = serve ] || [ "$what" = all ]; then
    # llava serve on the GPU under W1 load (bench/serve_load.py through the openai client)
    start_serve serve.log
    C=${SERVE_CONC:-64}
    python3 bench/serve_load.py --base-url http://127.0.0.1:8765 --images $IMG -n ${SERVE_N:-384} -c $C --warmup 8 \
        --json >"$OUT/serve_sat.json" 2>"$OUT/serve_sat.err"; echo "serve saturation rc=$?"
    sat=$(python3 -c "import json;print(json.load(open('$OUT/serve_sat.json'))['images_per_s'])" 2>/dev/null || echo 0)
    echo "saturation images/s: $sat (concurrency $C)"
    half=$(python3 -c "print(round($sat / 2, 3))")
    python3 bench/serve_load.py --base-url http://127.0.0.1:8765 --images $IMG -n ${SERVE_N_RATE:-192} -c 128 \
        --rate "$half" --json >"$OUT/serve_half.json" 2>"$OUT/serve_half.err"; echo "serve at $half/s rc=$?"
    show_load "$OUT/serve_sat.json" "$OUT/serve_half.json"
    curl -s http://127.0.0.1:8765/metrics | grep -E "^llava_(requests|images|running|queue|gpu)" | head -n 12
    kill -TERM $srv; wait $srv; echo "serve exit rc=$?"
    tail -n 3 "$OUT/serve.log"
fi
if [ "$what" = chat ] || [ "$what" = all ]; then
    # chat generation through llava serve: one client at a time, then many (continuous batching)
    start_serve serve_chat.log
    for C in ${CHAT_CONC:-1 16 64}; do
        n=$(( C * 2 > 8 ? C * 2 : 8 ))
        python3 bench/serve_load.py --base-url http://127.0.0.1:8765 --images $IMG --mode chat \
            --max-tokens ${CHAT_TOKENS:-64} -n $n -c $C --warmup 2 --json >"$OUT/chat_c$C.json" 2>"$OUT/chat_c$C.err"
        echo "chat concurrency $C rc=$?"
        show_load "$OUT/chat_c$C.json"
    done
    kill -TERM $srv; wait $srv; echo "serve exit rc=$?"
    grep -iE "kv|cache|step" "$OUT/serve_chat.log" | head -n 3
fi
if [ "$what" = mixed ]; then
    # classification and chat clients at the same time against one server
    start_serve serve_mixed.log
    python3 bench/serve_load.py --base-url http://127.0.0.1:8765 --images $IMG -n 320 -c 32 --warmup 4 \
        --json >"$OUT/mixed_cls.json" 2>"$OUT/mixed_cls.err" &
    cls=$!
    sleep 3
    python3 bench/serve_load.py --base-url http://127.0.0.1:8765 --images $IMG --mode chat --max-tokens 64 \
        -n 32 -c 8 --warmup 0 --json >"$OUT/mixed_chat.json" 2>"$OUT/mixed_chat.err"
    echo "mixed chat rc=$?"
    wait $cls; echo "mixed classify rc=$?"
    show_load "$OUT/mixed_cls.json" "$OUT/mixed_chat.json"
    kill -TERM $srv; wait $srv; echo "serve exit rc=$?"
fi
if [ "$what" = hf ] || [ "$what" = all ]; then
    python3 tools/bench_hf.py -m $CK --images $IMG -n ${HF_N:-64} --batches "${HF_BATCHES:-1,16,32}" --price-per-hour 2.5 \
        >"$OUT/bench_hf.jsonl" 2>"$OUT/bench_hf.err"; echo "bench_hf rc=$?"
    tail -n 4 "$OUT/bench_hf.jsonl"
fi
