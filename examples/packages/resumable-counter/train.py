"""A package that resumes (README, "Checkpoints"): it "trains" for EPOCHS epochs, keeps its state in
checkpoint_directory after each one and asks the agent to upload it. Killed with its agent, requeued,
stalled or preempted, the next attempt finds the latest complete checkpoint in the folder and goes on
from the epoch after it. Standard library only; try it with

    trainyard package push examples/packages/resumable-counter --name resumable-counter
    trainyard run train --package resumable-counter --dataset iris --env EPOCHS=30 --stall-timeout 120
"""
import json
import os
import time

import trainyard_checkpoint as ckpt


class Main:
    def __init__(self):
        self.total = 0

    def train(self, training_directory):
        state_file = os.path.join(ckpt.directory(), "state.json")
        epoch, self.total = 0, 0
        if os.path.exists(state_file):
            with open(state_file) as f:
                state = json.load(f)
            epoch, self.total = state["epoch"], state["total"]
            print("resuming at epoch %d (checkpoint %s)" % (epoch, json.dumps(ckpt.resumed_from())), flush=True)
        files = sorted(os.listdir(training_directory))
        for epoch in range(epoch + 1, int(os.environ.get("EPOCHS", "10")) + 1):
            time.sleep(float(os.environ.get("EPOCH_SECONDS", "1")))
            self.total += epoch * len(files)
            # Written whole, then renamed: a checkpoint taken by the agent's timer never holds half a file.
            tmp = state_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"epoch": epoch, "total": self.total}, f)
            os.replace(tmp, state_file)
            ckpt.commit()
            print("epoch %d total %d" % (epoch, self.total), flush=True)

    def save(self):
        with open("total.txt", "w") as f:
            f.write(str(self.total))
