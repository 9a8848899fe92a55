-- Issue 24, gang placement preferences: runs.prefer_same is a gang's --prefer-same LABEL (its members go
-- on agents sharing that label's value when such a group fits now; '' = no preference). A gang's wait
-- and its reservation (--gang-reserve-after) live in the placer's pass and in status_detail: no column.
ALTER TABLE runs ADD COLUMN prefer_same text NOT NULL DEFAULT '';
