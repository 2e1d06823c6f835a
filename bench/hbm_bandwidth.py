#!/usr/bin/env python3
"""The HBM bandwidth every benchmark figure is a fraction of: a torch device-to-device
copy of 1 GiB, rotated over four buffer pairs (so that L2 holds none of them), read +
write bytes over the median time of 32 timed copies. Prints GB/s; `measure()` returns
bytes per second for other scripts (bench/torch_baseline.py)."""
import torch


def measure(device="cuda"):
    n = 1 << 30
    bufs = [(torch.empty(n, dtype=torch.uint8, device=device),
             torch.empty(n, dtype=torch.uint8, device=device)) for _ in range(4)]
    for a, _ in bufs:
        a.random_(0, 255)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for i in range(40):
        a, b = bufs[i % 4]
        start.record()
        b.copy_(a)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times = sorted(times[8:])
    del bufs
    torch.cuda.empty_cache()
    return 2 * n / times[len(times) // 2]


if __name__ == "__main__":
    print(f"{measure() / 1e9:.0f}")
