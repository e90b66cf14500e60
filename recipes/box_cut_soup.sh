#!/usr/bin/env bash
# Issue 9, seventh candidate: a uniform weight soup of three runs of recipes/box_cut_copies.yaml that differ only in
# their seed (6: the shipped sixth run; 7 and 8 made here), all fine-tuned from the fifth run's model. From the second
# run on, the issue's missed test targets came and went by one to three faces from run to run while val, which chose
# each run, rose in small steps: the runs' spread is as large as the gaps. Averaging the weights of fine-tunes of one
# start (maskwatch.training.soup; two candidates: BatchNorm statistics measured again, then averaged; see below) aims
# at that spread instead of at val: one model that does about as well as its members on val and varies less on faces
# it has not seen.
#
# Rule, committed in 049fa06 before any epoch of seed 7 or 8 was scored, and tightened after a review (BatchNorm
# statistics measured again, which figure decides, no rounding) while seed 7's first epoch was on disk, unread. The
# soup replaces the shipped sixth run only if all of 1-3 hold on the val split; the fixed figures below decide (the
# script measures the sixth again as a check of the set-up, not as the bar):
#   1. benchmarks/box_cut_crops.py (int8, mirrored), row "both", box-exact column: macro-F1 >= 0.911 and mask_incorrect
#      recall >= 0.7778, i.e. at least 42 of 54 (the sixth: 0.916 and 44, less 0.005 and two faces);
#   2. recipes/weight_soup.py, row "soup" (fp32, one pass): photo_incorrect_recall >= 0.80 (the training floor); and
#      benchmarks/mirrored_classifier.py on the soup's int8 file, row "all", mirrored macro-F1 >= 0.9582 (the sixth's).
#      For a soup, which has no epochs, this stands in for the README's crop rule;
#   3. benchmarks/compare_classifiers.py: the soup ahead in at least half of the draws that have an AP, on 3-class mAP
#      and on mask_incorrect AP (the README's bootstrap rule), counted, not rounded.
# If ship_default.py --candidate refuses the soup's int8 file (more than 0.5 points lost on held-out val), nothing
# ships. Seeds 7 and 8 alone are not candidates: keeping the best of three seeds on a val split this small would keep
# noise. Each `maskwatch train` run scores its own test split at its end (report.json, log): those figures are not
# read before the choice; ship_default.py (without --candidate) scores the chosen model on test.
#
# Time on a 2-core CPU: about 19 min per training run, a few minutes for the soup, 10 min for the val checks.
#
#   bash recipes/box_cut_soup.sh     # trains, averages, writes runs/box_cut_soup/candidate_int8.onnx and val_checks.log
#   python recipes/ship_default.py runs/box_cut_soup --splits recipes/default_splits.csv.gz   # if the rule is met
set -euo pipefail
cd "$(dirname "$0")/.."

. recipes/candidate_checks.sh
# the fifth run (the members' start) and the sixth run (seed 6), from the commits that shipped them
from_git a1b6711:src/maskwatch/assets/maskwatch_mobilenet_v2.safetensors runs/real_incorrect_more_views/best.safetensors
sixth_run
for seed in 7 8; do
    [ -f "runs/box_cut_copies_seed$seed/report.json" ] ||  # written when a run has finished
        maskwatch train --config recipes/box_cut_copies.yaml --out "runs/box_cut_copies_seed$seed" --seed "$seed"
done
# candidate NAME BATCHNORM: the soup with its BatchNorm statistics measured again or averaged, and the rule's val checks
candidate() {
    local out=runs/$1
    mkdir -p "$out"
    python recipes/weight_soup.py runs/sixth_run runs/box_cut_copies_seed7 runs/box_cut_copies_seed8 \
        --out "$out" --batchnorm "$2" | tee "$out/weight_soup.log"
    python recipes/ship_default.py "$out" --splits recipes/default_splits.csv.gz --candidate
    val_checks "$out" soup
}
candidate box_cut_soup measured
# Outcome: it met rule 1 (box-exact macro-F1 0.925, 43 of 54) and the floor (0.852), but not the rest: int8 mirrored
# pooled macro-F1 0.9522 (< 0.9582), ahead of the sixth in 599 and 341 of 2000 draws. Not shipped. Measuring the
# statistics again on clean crops cost it: with the members' statistics averaged, the soup scored fp32 val macro-F1
# 0.9585 against 0.9563 (the members: sixth 0.9607, seed 7 0.9558, seed 8 0.9562), as the members' statistics came from
# augmented views. So that soup was judged second, by the same fixed bars, chosen after those val figures were seen
# (the test split still unread):
candidate box_cut_soup_averaged averaged
# Outcome: not shipped either. Box-exact macro-F1 0.922 with 43 of 54 (rule 1 met), floor met, but int8 mirrored pooled
# macro-F1 0.9543 (< 0.9582; held-out val int8 0.9687 against fp32 0.9729) and ahead of the sixth in 966 and 573 of
# 2000 draws (3-class mAP 0.7709 against 0.7711). The sixth run stays shipped: on val it is the best of the three seeds
# (fp32 macro-F1 0.9607 against 0.9558 and 0.9562) and neither soup reaches it. Seed 7's own int8 file would fail the
# 0.5-point parity gate (0.85 points lost on held-out val).
# Test figures of seeds 7 and 8 (trained again in a later session; val 0.9559 and 0.9576) and of their soup, read after
# every choice, to measure the spread of one recipe: docs/model-history.md, "The same seeds on the test split"
# (benchmarks/split_figures.py).
