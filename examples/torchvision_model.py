"""A torchvision ResNet-18, unchanged, learning 3 tasks with DST-based isolation (BWT exactly 0).

    python examples/torchvision_model.py      # needs torchvision (pip install -e ".[avalanche]"); a minute on a CPU

Its biases, affine BatchNorm and running statistics are kept per task by the learner
(dstcl.sparse.copies), so nothing it learned for one task changes when it learns the next.
"""

import torch
import torch.nn.functional as F
from torch.nn.functional import cross_entropy

from dstcl.data import load_dataset, make_tasks
from dstcl.sparse import SparseConfig, SparseLearner
from dstcl.vision import import_torchvision

torch.manual_seed(0)
torchvision = import_torchvision()                   # beside a CPU torch: without its compiled detection ops
tasks = make_tasks(load_dataset("digits", progress=False), 5)[:3]  # the first 3 of 5 two-class tasks
model = torchvision.models.resnet18(num_classes=10)  # as published: biases in fc, affine BatchNorm


def images(x: torch.Tensor) -> torch.Tensor:
    """8 x 8 grey digits as small RGB images (any size works: the network pools adaptively)."""
    return F.interpolate(x.float() / 255, size=16, mode="bilinear").expand(-1, 3, -1, -1)


heads = [slice(2 * t, 2 * t + 2) for t in range(3)]
learner = SparseLearner(model, SparseConfig(density=0.2, growth="random", update_frequency=4), num_tasks=3,
                        heads={"fc.weight": heads})
probe = {t.index: images(t.test_x) for t in tasks}
right_after = {}
for task in tasks:
    x, y = images(task.train_x), task.train_y
    learner.start_task(task.index, total_steps=len(y) // 32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    learner.attach(optimizer)
    model.train()
    for idx in torch.randperm(len(y))[: len(y) // 32 * 32].view(-1, 32):
        loss = cross_entropy(model(x[idx])[:, heads[task.index]], y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    learner.end_task()
    model.eval()                                      # evaluation uses the task's own running statistics
    with torch.no_grad():
        right_after[task.index] = model(probe[task.index])[:, heads[task.index]]

for task in tasks:
    learner.apply_task(task.index)
    with torch.no_grad():
        logits = model(probe[task.index])[:, heads[task.index]]
    assert torch.equal(logits, right_after[task.index]), "isolation broken"
    accuracy = 100 * (logits.argmax(1) == task.test_y).float().mean()
    print(f"task {task.index}: {accuracy:.1f} %, unchanged since it was learned")
