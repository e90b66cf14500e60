# Shared by the issue-9 candidate recipes (source it from the repository root): the shipped sixth run fetched from the
# commit that shipped it, and the val checks a candidate's int8 file is judged by against it.
# shellcheck shell=bash

from_git() {  # COMMIT:PATH DESTINATION, written whole or not at all
    [ -s "$2" ] && return
    mkdir -p "$(dirname "$2")"
    git show "$1" > "$2.partial" && mv "$2.partial" "$2"
}

sixth_run() {  # the shipped sixth run's checkpoint and int8 file under runs/sixth_run
    from_git 334a3ec:src/maskwatch/assets/maskwatch_mobilenet_v2.safetensors runs/sixth_run/best.safetensors
    from_git 334a3ec:src/maskwatch/assets/maskwatch_mobilenet_v2_int8.onnx runs/sixth_run/int8.onnx
}

val_checks() {  # OUT NAME: OUT/candidate_int8.onnx against the sixth on val, as NAME; the log goes to OUT/val_checks.log
    local out=$1 name=$2
    rm -rf "$out/box_cut_val"
    {
        python benchmarks/box_cut_crops.py --split val --out "$out/box_cut_val" \
            --model sixth=runs/sixth_run/int8.onnx --model "$name=$out/candidate_int8.onnx"
        for model in runs/sixth_run/int8.onnx "$out/candidate_int8.onnx"; do
            echo "mirrored_classifier.py: $model"
            python benchmarks/mirrored_classifier.py --split val --model "$model"
        done
        python benchmarks/compare_classifiers.py ../shared/data/scenes ../shared/data/scenes-ilc --split val \
            --model runs/sixth_run/int8.onnx --other "$out/candidate_int8.onnx"
    } | tee "$out/val_checks.log"
}
