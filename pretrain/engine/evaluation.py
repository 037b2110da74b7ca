"""Evaluation on every validation set (val, and v2 / ReaL when configured): top-1/top-5/loss summed over ranks."""
from __future__ import annotations

import logging

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .distributed import all_reduce_sum
from .logs import show_bar

logger = logging.getLogger('cosub')


class Evaluation:
    """Trainer methods that evaluate the model."""

    @torch.no_grad()
    def evaluate(self, name: str = 'val', model=None) -> dict:
        """Metrics of `model` (default: the trained model) on the validation set `name`."""
        model = self.model if model is None else model
        loader = self.val_loaders[name]
        ds = loader.dataset.base
        real = getattr(ds, 'real_labels', None)
        model.eval()
        sums = [0.0] * 7  # correct@1, correct@5, loss, n, real correct, real n, unreadable images
        on_device = None  # correct@1, correct@5, loss: summed on the device, read once at the end (no sync per batch)
        first_bad = None
        from tqdm import tqdm
        if self.fsdp:  # every forward pass gathers parameters from all ranks: all must run as many
            most = torch.tensor([len(loader)], device=self.d.device if self.d.device.type == 'cuda' else 'cpu')
            dist.all_reduce(most, op=dist.ReduceOp.MAX)  # before any forward pass, so the collectives pair up
        for batch in tqdm(loader, desc=f'eval {name}', disable=not (self.d.is_main and show_bar()), leave=False):
            images, labels, index, bad_paths = self._to_device(batch)
            with self._autocast():
                logits = model(images)
            # An unreadable image came as a placeholder: its row is left out of every metric and counted.
            good = [not p for p in bad_paths]
            sums[6] += len(good) - sum(good)
            first_bad = first_bad or next(filter(None, bad_paths), None)
            if not all(good):
                keep = torch.tensor(good, device=logits.device)
                logits, labels, index = logits[keep], labels[keep], index[keep.cpu()]
            logits = logits.float()
            top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
            batch_sums = torch.stack([(top5[:, 0] == labels).sum(), (top5 == labels[:, None]).any(dim=1).sum(),
                                      F.cross_entropy(logits, labels, reduction='sum')]).double()
            on_device = batch_sums if on_device is None else on_device + batch_sums
            sums[3] += len(labels)
            if real is not None:
                for pred, i in zip(top5[:, 0].tolist(), index.tolist()):
                    if real[i]:
                        sums[4] += pred in real[i]
                        sums[5] += 1
        if self.fsdp:
            blank = torch.zeros(1, 3, self.cfg.input_size, self.cfg.input_size, device=self.d.device)
            with self._autocast():
                for _ in range(int(most.item()) - len(loader)):
                    model(blank)
        if on_device is not None:
            sums[:3] = on_device.tolist()
        c1, c5, loss, n, rc, rn, bad = all_reduce_sum(sums, self.d)
        out = {'top1': 100 * c1 / max(n, 1), 'loss': loss / max(n, 1), 'n': int(n)}
        if self.num_classes > 5:  # top-5 of 5 classes or fewer is always 100%: not logged
            out['top5'] = 100 * c5 / max(n, 1)
        if real is not None:
            out['real_top1'] = 100 * rc / max(rn, 1)
        out['bad_images'] = int(bad)
        if bad:
            logger.warning('%s: %d unreadable image(s) left out of the metrics (over %d images); the first: %s',
                           name, int(bad), int(n), first_bad or 'on another rank')
        return out

    def evaluate_all(self) -> dict:
        """Every validation set, for every model the method evaluates: val_top1 for the run's model, and e.g.
        val_top1_ema (mean teacher) or val_top1_peer (co-training's second model) beside it."""
        record = {}
        for suffix, model in self.method.eval_models(self.model).items():
            for name in self.val_loaders:
                for k, v in self.evaluate(name, model).items():
                    key = 'real_top1' if name == 'val' and k == 'real_top1' else f'{name}_{k}'
                    record[key + suffix] = v
        return record
