"""A torchvision model (MobileNetV3-Small), unchanged, learning 3 tasks with DST-based isolation (BWT exactly 0).

    python examples/torchvision_model.py      # needs torchvision (pip install -e ".[avalanche]"); a minute on a CPU

Its biases, affine BatchNorm and running statistics are kept per task by the learner
(dstcl.sparse.copies), so nothing it learned for one task changes when it learns the next.
refresh_running_statistics re-estimates the BatchNorm statistics a short task leaves behind.
"""

import torch
import torch.nn.functional as F
from torch.nn.functional import cross_entropy

from dstcl.data import load_dataset, make_tasks
from dstcl.sparse import SparseConfig, SparseLearner
from dstcl.sparse.copies import refresh_running_statistics
from dstcl.vision import import_torchvision

torch.manual_seed(0)
torchvision = import_torchvision()                   # beside a CPU torch: without its compiled detection ops
tasks = make_tasks(load_dataset("digits", progress=False), 5)[:3]  # the first 3 of 5 two-class tasks
model = torchvision.models.mobilenet_v3_small(num_classes=10)  # as published: biases, affine BatchNorm


def images(x: torch.Tensor) -> torch.Tensor:
    """8 x 8 grey digits as small RGB images (any size works: the network pools adaptively)."""
    return F.interpolate(x.float() / 255, size=16, mode="bilinear").expand(-1, 3, -1, -1)


heads = [slice(2 * t, 2 * t + 2) for t in range(3)]
learner = SparseLearner(model, SparseConfig(density=0.2, growth="random", update_frequency=4), num_tasks=3,
                        heads={"classifier.3.weight": heads})
probe = {t.index: images(t.test_x) for t in tasks}
right_after = {}
for task in tasks:
    x, y = images(task.train_x), task.train_y
    learner.start_task(task.index, total_steps=2 * (len(y) // 32))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    learner.attach(optimizer)
    model.train()
    for epoch in range(2):
        for idx in torch.randperm(len(y))[: len(y) // 32 * 32].view(-1, 32):
            loss = cross_entropy(model(x[idx])[:, heads[task.index]], y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    refresh_running_statistics(model, x.split(64))   # a short task leaves BatchNorm's statistics behind
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
