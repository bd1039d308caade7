"""Plain PyTorch reference: ResNet-50 + 751-way FC trained with `torch.optim.SGD`.

The network is torchvision's ResNet-50 v1.5 layout (stride in the 3x3 conv of each
bottleneck, as in the authors' code), written out compactly so that the benchmark needs
nothing beyond `torch`. The loop is what the paper's PyTorch code does per step:
`zero_grad`, forward, cross-entropy, backward, Nesterov SGD step with L2 weight decay.

Usage (normally called by `benchmarks/run_all.py`):
    python benchmarks/torch_reference.py --height 128 --width 64 --batch_size 16 --output out.json
"""

import argparse
import json
import os
import resource
import statistics
import time

import torch
from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels, width, stride):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """ResNet v1.5 with global average pooling and a linear classifier."""

    def __init__(self, blocks_per_stage=(3, 4, 6, 3), num_classes=751):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        layers, in_channels = [], 64
        for stage, blocks in enumerate(blocks_per_stage):
            width = 64 * 2**stage
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(Bottleneck(in_channels, width, stride))
                in_channels = width * Bottleneck.expansion
        self.stages = nn.Sequential(*layers)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def training_images_per_second(
    height, width, batch_size, num_classes, warmup_steps, steps, repeats
):
    """Images/s of `repeats` timed runs of `steps` steps each, and the median CPU seconds per step."""
    torch.manual_seed(0)
    model = ResNet(num_classes=num_classes)
    model.train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    loss_fn = nn.CrossEntropyLoss()
    images = torch.randn(batch_size, 3, height, width)
    labels = torch.randint(0, num_classes, (batch_size,))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss.item()  # Waits for the step, as a logging loop does.

    for _ in range(warmup_steps):
        step()
    rates, cpu_seconds = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        rates.append(steps * batch_size / (time.perf_counter() - start))
        cpu_seconds.append((time.process_time() - cpu_start) / steps)
    return rates, statistics.median(cpu_seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=288)
    parser.add_argument("--width", type=int, default=144)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--num_classes", type=int, default=751)
    parser.add_argument("--warmup_steps", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", required=True, help="JSON file for the results.")
    args = parser.parse_args()
    rates, step_cpu_seconds = training_images_per_second(
        args.height,
        args.width,
        args.batch_size,
        args.num_classes,
        args.warmup_steps,
        args.steps,
        args.repeats,
    )
    result = {
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "images_per_second": statistics.median(rates),
        "images_per_second_runs": rates,
        "step_cpu_seconds": step_cpu_seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cpu_count": os.cpu_count(),
    }
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
