"""DST-based continual learning inside your own PyTorch loop: the learner hooks into optimizer.step().

    python examples/plain_loop.py        # the offline digits data, 5 tasks of 2 classes, seconds on a CPU

The only dstcl calls are start_task / attach / end_task around your loop, and apply_task to evaluate.
"""

import torch
from torch.nn.functional import cross_entropy

from dstcl.data import load_dataset, make_tasks
from dstcl.models import build_model, output_weight
from dstcl.sparse import SparseConfig, SparseLearner

torch.manual_seed(0)
data = load_dataset("digits", progress=False)         # 10 classes of 8 x 8 digits, shipped with scikit-learn
tasks = make_tasks(data, 5)                            # 5 tasks of 2 classes
model = build_model("cnn", num_classes=10, in_channels=1, image_size=8)
heads = [slice(2 * t, 2 * t + 2) for t in range(5)]   # each task's logits (multi-head by slicing)
learner = SparseLearner(model, SparseConfig(density=0.2, growth="gradient", update_frequency=10), num_tasks=5,
                        heads={output_weight(model, 10): heads})  # a task owns only its own classifier rows
epochs, batch = 10, 32
for task in tasks:
    x, y = task.train_x.float() / 255, task.train_y
    learner.start_task(task.index, total_steps=epochs * (len(y) // batch))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    learner.attach(optimizer)                          # isolation + DST topology updates inside optimizer.step()
    for _ in range(epochs):
        order = torch.randperm(len(y))
        for start in range(0, len(y) - batch + 1, batch):
            idx = order[start:start + batch]
            loss = cross_entropy(model(x[idx])[:, heads[task.index]], y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    learner.end_task()                                 # the task's weights are frozen from now on

accuracy = []
for task in tasks:                                     # every task through its own subnetwork
    learner.apply_task(task.index)
    with torch.no_grad():
        predicted = model(task.test_x.float() / 255)[:, heads[task.index]].argmax(1)
    accuracy.append(100 * (predicted == task.test_y).float().mean().item())
print("accuracy per task:", ", ".join(f"{a:.1f} %" for a in accuracy))
