#!/usr/bin/env bash
# Issue 9, seventh candidate: a uniform weight soup of three runs of recipes/box_cut_copies.yaml that differ only in
# their seed (6: the shipped sixth run; 7 and 8 made here), all fine-tuned from the fifth run's model. From the second
# run on, the issue's missed test targets came and went by one to three faces from run to run while val, which chose
# each run, rose in small steps: the runs' spread is as large as the gaps. Averaging the weights of fine-tunes of one
# start (maskwatch.training.soup) aims at that spread instead of at val: one model that does about as well as its
# members on val and varies less on faces it has not seen.
#
# Rule, set and committed before seeds 7 and 8 finished: the soup replaces the shipped sixth run if, on the val split,
#   1. on box-exact files of both scene sets (benchmarks/box_cut_crops.py, int8, mirrored) it keeps the sixth's gain:
#      macro-F1 >= 0.911 and mask_incorrect found in >= 42 of 54 (the sixth: 0.916 and 44, less 0.005 and two faces);
#   2. fp32, one pass (recipes/weight_soup.py): real in-photo mask_incorrect recall >= 0.80 (the training floor); and its
#      int8 file's pooled mirrored val macro-F1 (benchmarks/mirrored_classifier.py) >= the sixth's 0.9582;
#   3. end to end on the 259 val photos (benchmarks/compare_classifiers.py) it is ahead of the sixth in at least half
#      of the 2000 draws on 3-class mAP and on mask_incorrect AP (the README's standing replacement rule).
# Seeds 7 and 8 alone are not candidates: keeping the best of three seeds on a val split this small would keep noise.
# Only after the choice does ship_default.py (without --candidate) read the test split.
#
# Time on a 2-core CPU: about 19 min per training run, 1 min for the soup, 10 min for the val checks.
#
#   bash recipes/box_cut_soup.sh            # trains, averages, writes runs/box_cut_soup/candidate_int8.onnx, checks val
#   python recipes/ship_default.py runs/box_cut_soup --splits recipes/default_splits.csv.gz   # if the rule is met
set -euo pipefail
cd "$(dirname "$0")/.."

mkdir -p runs/real_incorrect_more_views runs/box_cut_copies
[ -f runs/real_incorrect_more_views/best.safetensors ] ||
    git show a1b6711:src/maskwatch/assets/maskwatch_mobilenet_v2.safetensors > runs/real_incorrect_more_views/best.safetensors
[ -f runs/box_cut_copies/best.safetensors ] ||
    git show 334a3ec:src/maskwatch/assets/maskwatch_mobilenet_v2.safetensors > runs/box_cut_copies/best.safetensors
for seed in 7 8; do
    [ -f "runs/box_cut_copies_seed$seed/report.json" ] ||  # written when a run has finished
        maskwatch train --config recipes/box_cut_copies.yaml --out "runs/box_cut_copies_seed$seed" --seed "$seed"
done
python recipes/weight_soup.py runs/box_cut_copies runs/box_cut_copies_seed7 runs/box_cut_copies_seed8 \
    --out runs/box_cut_soup
python recipes/ship_default.py runs/box_cut_soup --splits recipes/default_splits.csv.gz --candidate
sixth=runs/box_cut_copies/int8.onnx
git show 334a3ec:src/maskwatch/assets/maskwatch_mobilenet_v2_int8.onnx > "$sixth"
out=$(mktemp -d)
python benchmarks/box_cut_crops.py --split val --out "$out/box_cut" --model sixth="$sixth" \
    --model soup=runs/box_cut_soup/candidate_int8.onnx
for model in "$sixth" runs/box_cut_soup/candidate_int8.onnx; do
    python benchmarks/mirrored_classifier.py --split val --model "$model"
done
python benchmarks/compare_classifiers.py ../shared/data/scenes ../shared/data/scenes-ilc --split val \
    --model "$sixth" --other runs/box_cut_soup/candidate_int8.onnx
