#!/usr/bin/env bash
# Issue 9, ninth candidate: a WiSE-FT blend, weight by weight, of the shipped sixth run and the eighth run
# (recipes/label_audited.yaml), which was fine-tuned from the sixth on the blind-audited labels. On val the eighth was
# ahead on the face crops (rules 1 and 2: box-exact macro-F1 0.9341 against 0.9159, mirrored pooled 0.9576 against
# 0.9553) and behind on the scene photos end to end (rule 3: ahead in 634 and 410 of 2000 draws). Both start from one
# model and lie three epochs at a small learning rate apart, so their weights can be averaged
# (benchmarks/weight_interpolation.py); this asks whether a point between them keeps the crops' gain and the
# photos' ranking.
#
# Rule, committed before the eighth run was trained again here and before any blend was scored:
#   a. benchmarks/weight_interpolation.py scores the blends (1 - a) * sixth + a * eighth for a in 0.2 ... 0.8 on the
#      val faces (fp32, one pass, audited labels) and keeps the a with the best pooled val macro-F1 among those whose
#      in-photo mask_incorrect recall reaches the 0.80 floor. a = 0 and a = 1 are left out: both were judged already.
#   b. The kept blend replaces the sixth only if rules 1-3 of recipes/label_audited.yaml hold on val, the sixth measured
#      again by the same commands:
#      1. box_cut_crops.py, row "both", box-exact column: macro-F1 at most 0.005 below the sixth's, mask_incorrect found
#         at most two faces fewer;
#      2. the floor of (a), and the int8 file's mirrored pooled val macro-F1 (mirrored_classifier.py, row "all") at
#         least the sixth's;
#      3. compare_classifiers.py: ahead of the sixth in at least half of the draws on 3-class mAP and on
#         mask_incorrect AP, counted.
#   If ship_default.py --candidate refuses its int8 file, nothing ships. The eighth run, trained again, reports its
#   test split at its end (report.json, log): not read before the choice.
#
#   bash recipes/audited_blend.sh      # trains the eighth run again if missing (about 50 min on 2 cores), blends,
#                                      # writes runs/audited_blend/candidate_int8.onnx and val_checks.log
#   python recipes/ship_default.py runs/audited_blend --splits recipes/default_splits.csv.gz   # if the rule is met
set -euo pipefail
cd "$(dirname "$0")/.."

. recipes/candidate_checks.sh
sixth_run
[ -f runs/label_audited/report.json ] ||  # written when a run has finished
    maskwatch train --config recipes/label_audited.yaml

out=runs/audited_blend
mkdir -p "$out"
python benchmarks/weight_interpolation.py runs/sixth_run/best.safetensors runs/label_audited/best.safetensors \
    --out "$out" --grid 0.2,0.3,0.4,0.5,0.6,0.7,0.8 | tee "$out/weight_interpolation.log"
python recipes/ship_default.py "$out" --splits recipes/default_splits.csv.gz --candidate
val_checks "$out" blend
# Outcome: not shipped; it fails rule 3. Here, on the AVX2-only EPYC: the eighth run trained again in 28 min by its
# report (kept epoch 3 again, val macro-F1 0.9602, 48 of 54; epoch 1 0.9562 against the first time's 0.9574), the
# blends 5 min, the val checks 11 min. Val macro-F1 by a (fp32, one pass, 1405 faces; floor 0.889 at every a):
# 0.9571 / 0.9559 / 0.9588 / 0.9602 / 0.9614 / 0.9614 / 0.9614 at 0.2 ... 0.8, so a = 0.6 was kept (the first of the
# tie; temperature 0.654). Held-out val int8 0.9729 against fp32 0.9758 (agreement 0.9943): the gate passed. Against
# the sixth, measured again:
#   1. box-exact files, both sets: macro-F1 0.9257 with 44 of 54 found (sixth: 0.9159, 44): met;
#   2. int8 mirrored pooled macro-F1 0.9582 (sixth: 0.9553): met; chandrika val mask_incorrect 4 of 7 (sixth: 1);
#   3. val photos 3-class mAP 0.7921 against 0.7950, ahead in 630 of 2000 draws; mask_incorrect AP 0.6992 against
#      0.7115, ahead in 530: not met.
# Of the 705 detected val faces that cover an annotated one, the two label 4 differently (compare_classifiers.py
# --changes): the mask_incorrect AP gap is two masks worn on the chin (scenes-ilc, face score 0.85) that the sixth calls
# mask_incorrect at 0.53 and 0.51 and the blend without_mask at 0.76 and 0.61.
