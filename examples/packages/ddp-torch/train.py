"""PyTorch DistributedDataParallel across a Trainyard gang (README, "Multi-agent runs").

Trainyard launches every rank the way torchrun would (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK,
LOCAL_RANK, ...; CUDA_VISIBLE_DEVICES holds the process's own GPU), so `init_process_group("env://")` is all
a rank needs to join the others. Backend: NCCL where the process sees a GPU, gloo on CPU.

The model fits y = 3x + 2 on synthetic data; each rank trains on its shard (DistributedSampler) and DDP
averages the gradients, so every rank ends with the same weights: train() checks that with an all_gather
and fails the run if they differ. Only global rank 0's save() runs (Trainyard calls it on rank 0 alone): the
new version holds model.pt and weights.json; every rank writes artifacts/rank-R.json.

    trainyard package push examples/packages/ddp-torch --name ddp-torch
    trainyard run train --package ddp-torch --dataset iris --agents 2 --procs-per-agent 2 --wait
    trainyard run train --package ddp-torch --dataset iris --agents 2 --gpu --gpus-per-agent 4 --procs-per-agent 4

Env: EPOCHS (default 30), ROWS (default 4096), BATCH (per rank, default 64), LR (default 0.05).
"""
import json
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

try:
    import trainyard  # on every Trainyard run's path; absent elsewhere
except ImportError:  # pragma: no cover - outside Trainyard
    trainyard = None


def dataset(rows):
    # The same data on every rank (fixed seed); the sampler gives each rank its own shard of it.
    g = torch.Generator().manual_seed(0)
    x = torch.rand(rows, 1, generator=g) * 4 - 2
    y = 3 * x + 2 + 0.05 * torch.randn(rows, 1, generator=g)
    return TensorDataset(x, y)


class Main:
    def __init__(self):
        self.state = None

    def train(self, training_directory):
        use_cuda = torch.cuda.is_available()
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://")
        rank, world = dist.get_rank(), dist.get_world_size()
        device = torch.device("cuda", 0) if use_cuda else torch.device("cpu")  # its own GPU is device 0
        torch.manual_seed(0)  # the same initial weights everywhere (DDP broadcasts rank 0's anyway)
        model = DDP(nn.Linear(1, 1).to(device), device_ids=[0] if use_cuda else None)
        data = dataset(int(os.environ.get("ROWS", "4096")))
        sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=0)
        loader = DataLoader(data, batch_size=int(os.environ.get("BATCH", "64")), sampler=sampler)
        opt = torch.optim.SGD(model.parameters(), lr=float(os.environ.get("LR", "0.05")))
        loss_fn = nn.MSELoss()
        for epoch in range(int(os.environ.get("EPOCHS", "30"))):
            sampler.set_epoch(epoch)
            total, n = torch.zeros(2, device=device), 0
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                opt.zero_grad()
                loss = loss_fn(model(x), y)
                loss.backward()  # DDP all-reduces the gradients here
                opt.step()
                total[0] += loss.detach() * len(x)
                total[1] += len(x)
            dist.all_reduce(total)  # the epoch's loss over every rank's shard
            epoch_loss = (total[0] / total[1]).item()
            if rank == 0:
                print("epoch %d loss %.5f" % (epoch, epoch_loss), flush=True)
                if trainyard:
                    trainyard.log(step=epoch, loss=epoch_loss)
        w, b = model.module.weight.item(), model.module.bias.item()
        # Every rank must hold the same weights: that is what DDP promises.
        mine = torch.tensor([w, b], device=device)
        everyone = [torch.zeros(2, device=device) for _ in range(world)]
        dist.all_gather(everyone, mine)
        if any(not torch.allclose(t, mine) for t in everyone):
            raise RuntimeError("ranks disagree on the weights: %s" % [t.tolist() for t in everyone])
        print("rank %d of %d: w=%.4f b=%.4f (backend %s)" % (rank, world, w, b, dist.get_backend()), flush=True)
        art = os.environ.get("artifacts_directory", "artifacts")
        os.makedirs(art, exist_ok=True)
        with open(os.path.join(art, "rank-%d.json" % rank), "w") as f:
            json.dump({"rank": rank, "world": world, "w": w, "b": b, "loss": epoch_loss}, f)
        self.state = {k: v.cpu() for k, v in model.module.state_dict().items()}
        self.result = {"w": w, "b": b, "loss": epoch_loss, "world_size": world, "backend": dist.get_backend()}
        dist.barrier()
        dist.destroy_process_group()

    def save(self):
        # Next to the code: the package folder after save() becomes the new version (rank 0 only).
        torch.save(self.state, "model.pt")
        with open("weights.json", "w") as f:
            json.dump(self.result, f)
