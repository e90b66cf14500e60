#!/usr/bin/env bash
# Issue 9, eighth candidate: the shipped sixth run's weights unchanged, with the class weighting of its training undone
# at inference. Every issue-9 run trained with inverse-frequency class weights (train faces 5477 / 3386 / 1127 with the
# box-exact copies; first written here as 5507 / 3400 / 1129, a count before the exclusions), so its softmax estimates the posterior of a world where the three classes are equally common: it
# calls a face `mask_incorrect` about three times as readily as that class's real share warrants. Most of the test
# targets still missed are missed by faces wrongly called `mask_incorrect` (3 of chandrika's 5 errors, both of
# MaskedFace-Net's 2). The correction is the standard one for a weighted loss (logit adjustment): add -log(class weight)
# to each class's calibrated logit, p = softmax(logits / T + offsets), with T fitted again on val with the offsets in
# place. The offsets follow from the weights the run trained with; only T is fitted on val, as for every model (it
# also sets how strongly the offsets act). New runs record them in
# their metadata themselves (maskwatch.training.train, run_meta and finish).
#
# What was seen before this rule was written (val only, shipped int8, mirrored, the sixth's T; a scratch sweep): pooled
# val macro-F1 0.9582 -> 0.9629, real `mask_incorrect` 46 of 54 both, val NLL 0.1335 -> 0.1133 (one pass); with T
# fitted again (0.83 on int8 logits) 0.9634, 45 of 54, NLL 0.1076. A sweep of an offset on `mask_incorrect` alone from
# -1.5 to +1.5 was seen too; it is not used to choose anything. Box-exact files and photos end to end were not scored.
#
# Rule, committed before those are scored. The corrected model replaces the sixth run's only if all of 1-3 hold on the
# val split, with the sixth as the bar (fixed figures, from the README; now in docs/model-history.md):
#   1. benchmarks/box_cut_crops.py (int8, mirrored), row "both", box-exact column: macro-F1 >= 0.911 and
#      `mask_incorrect` recall >= 0.7778 (42 of 54), as for the soups;
#   2. benchmarks/mirrored_classifier.py, row "all", mirrored macro-F1 >= 0.9582, and the recall floor (faces from
#      scene photos, fp32 one pass, >= 0.80) met;
#   3. benchmarks/compare_classifiers.py against the sixth: ahead in at least half of the draws that have an AP, on
#      3-class mAP and on `mask_incorrect` AP.
# and the int8 file passes ship_default.py's parity gate (offsets apply to fp32 and int8 alike). Only then does
# ship_default.py read the test split.
#
#   bash recipes/prior_correction.sh   # writes runs/prior_correction/{best.safetensors,candidate_int8.onnx,val_checks.log}
set -euo pipefail
cd "$(dirname "$0")/.."

. recipes/candidate_checks.sh
sixth_run

out=runs/prior_correction
mkdir -p "$out"
python recipes/prior_correction.py runs/sixth_run/best.safetensors --config recipes/box_cut_copies.yaml --out "$out" \
    | tee "$out/prior_correction.log"
python recipes/ship_default.py "$out" --splits recipes/default_splits.csv.gz --candidate
val_checks "$out" corrected
# Outcome (2026-12-01, this 2-core AMD EPYC, VNNI): not shipped. Offsets from the train counts 5477 / 3386 / 1127
# (6478 faces + 3512 box-exact copies, as training had them): [0.687, 0.206, -0.894]; temperature 0.681 -> 0.825; fp32
# val, one pass: NLL 0.1306 -> 0.1033, ECE 0.0100 -> 0.0063, macro-F1 0.9607 -> 0.9604, real `mask_incorrect` 48 -> 44
# of 54 (floor met). Held-out val int8 0.9744 against fp32 0.9758 (parity met).
#   1. box-exact, both sets: macro-F1 0.9112 (>= 0.911), `mask_incorrect` 40 of 54 (< 42): FAILED;
#   2. int8 mirrored pooled macro-F1 0.9634 (>= 0.9582): met;
#   3. val photos: 3-class mAP 0.7656 against 0.7711 (ahead in 493 of 2000 draws), `mask_incorrect` AP 0.665 against
#      0.692 (277 of 2000): FAILED.
# Fewer faces called `mask_incorrect` means fewer false ones on the crop sets and fewer real ones found, in photos and
# on box-exact files, which is what the issue counts most. The test split was not read.
# Read afterwards, with seeds 7 and 8 of box_cut_copies.yaml (docs/model-history.md, "The same seeds on the test split"; int8,
# mirrored): chandrika 0.9918, MaskedFace-Net 0.9839, scenes crops macro-F1 0.941 (recall 0.750), scenes-ilc 0.932
# (0.845); photos: scenes-ilc 3-class mAP 0.7332 (the sixth 0.7355), Kaggle test 0.8358 (0.8288). Not a reason to ship:
# the rule decided on val, and box-exact files were not scored on test.
