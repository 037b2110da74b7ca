"""The training strategies of the cosub paper's Table 4 and Figure 2, behind one config key, `method` (--method):

    baseline      (a) supervised DeiT III: the label only
    kd            (b) knowledge distillation from a frozen pre-trained teacher (--teacher)
    mean_teacher  (c) the exponential moving average of the weights (full depth) is the teacher
    cotrain       (d) two separate models, each with its own initialisation, each the other's teacher
    cosub         (e) two submodels of one model drawn by stochastic depth, each the other's teacher (default)
    kd_cosub      (b)+(e) cosub with the pre-trained teacher as one more teacher of each submodel

A method tells the loop (engine/loop.py) how many copies of each image the model sees, what the loss is, and what
it adds to a run: an outside model (the teacher, the EMA) with its forward pass and update, a second model, their
state in checkpoints and what is evaluated. The loop has no branch per method. The losses are in cosub.py.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

import backbones

from .cosub import KD_TARGETS, cosub_loss, kd_cosub_loss, kd_loss
from .engine.errors import SettingsError

logger = logging.getLogger('cosub')

METHODS: Dict[str, type] = {}

# Figure 2's cost of each method, relative to the supervised baseline: weights stored, optimizer state, training
# compute (a forward pass counted as 1/3 of a training step; cosub without ESD). KD + cosub is not in Figure 2:
# its numbers are those of (b) and (e) added up.
PAPER_COST = {
    'baseline': (1, 1, 1.0), 'kd': (2, 1, 1.33), 'mean_teacher': (2, 1, 1.33), 'cotrain': (2, 2, 2.0),
    'cosub': (1, 1, 2.0), 'kd_cosub': (2, 1, 2.33),
}


class MethodError(SettingsError):
    """A method that cannot run as configured (no teacher, another teacher than the checkpoint's, ...): exit 2."""


def register(cls):
    METHODS[cls.name] = cls
    return cls


def build_method(cfg) -> 'Method':
    check_method_config(cfg)
    return METHODS[cfg.method](cfg)


def check_method_config(cfg) -> None:
    """Refuse, in one line, a method whose settings cannot train what they say (before anything is built)."""
    name = cfg.method
    if name not in METHODS:
        raise MethodError(f'method={name!r}: expected one of {", ".join(METHODS)}')
    lams = {'cosub': 'cosub.lam', 'kd_cosub': 'cosub.lam', 'kd': 'kd.lam', 'mean_teacher': 'mean_teacher.lam',
            'cotrain': 'cotrain.lam'}
    if name in lams:
        group, key = lams[name].split('.')
        lam = cfg[group][key]
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= lam <= 1.0:
            raise MethodError(f'{lams[name]}={lam!r}: expected a weight in [0, 1] (1: the label alone)')
    if name in ('cosub', 'kd_cosub'):
        k = cfg.cosub.num_submodels
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise MethodError(f'cosub.num_submodels={k!r}: co-training needs at least 2 submodels '
                              '(--method baseline trains without them)')
    if name in ('kd', 'kd_cosub'):
        if not cfg.kd.teacher and not cfg.get('eval_only'):  # --eval needs no teacher
            raise MethodError(f'--method {name} needs a teacher: pass --teacher CHECKPOINT (a file, '
                              'hf-hub:<owner>/<repo> or local-dir:<folder>), with --teacher-model NAME where the file '
                              'names no architecture')
        if cfg.kd.target not in KD_TARGETS:
            raise MethodError(f'kd.target={cfg.kd.target!r}: expected one of {", ".join(KD_TARGETS)}')
        t = cfg.kd.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
            raise MethodError(f'kd.temperature={t!r}: expected a positive number')
    if name == 'mean_teacher':
        decay = cfg.mean_teacher.decay
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
            raise MethodError(f'mean_teacher.decay={decay!r}: expected a number in [0, 1), e.g. 0.9999')


class Method:
    """The supervised baseline; the other methods change what they need of it."""
    name = 'baseline'
    row = '(a) supervised baseline'
    copies = 1  # rows per image in the model's forward pass

    def __init__(self, cfg):
        self.cfg = cfg
        self.loss_type = cfg.loss.type

    @property
    def lam(self) -> float:
        return 1.0

    def describe(self) -> str:
        return f'{self.name}: {self.row}'

    def build_model(self, make: Callable[[], nn.Module]) -> nn.Module:
        """The trained module, from `make()` (builders.build_model with the run's config)."""
        return make()

    def setup(self, trainer) -> None:
        """Called once the model is on its device, before resuming: outside models are built here."""

    def teacher_logits(self, images: Tensor, autocast) -> Optional[Tensor]:
        """An outside teacher's logits on the augmented images (one copy each), or None."""
        return None

    def loss(self, logits: Tensor, targets: Tensor, teacher: Optional[Tensor]) -> Tensor:
        return cosub_loss(logits, targets, num_submodels=1, lam=1.0, loss=self.loss_type)

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after each optimizer step."""

    def parameter_sets(self, model: nn.Module) -> List[List[nn.Parameter]]:
        """The parameters whose gradients are clipped together (each model of a run on its own)."""
        return [list(model.parameters())]

    def eval_models(self, model: nn.Module) -> Dict[str, nn.Module]:
        """What is evaluated: {suffix of the metric names: module}; '' is the model the run is about."""
        return {'': model}

    # -- checkpoints: the run's model state under 'model' (what every loader reads), the rest beside it --------
    def split_model_state(self, state: dict) -> dict:
        return dict(model=state)

    def join_model_state(self, ckpt: dict, path) -> dict:
        return ckpt['model']

    def state_dict(self) -> dict:
        """What the method adds to a checkpoint, beside the model and optimizer."""
        return {}

    def load_state_dict(self, ckpt: dict, path) -> None:
        """Restore the method's state from a training checkpoint of the same method."""


register(Method)


@register
class Cosub(Method):
    name = 'cosub'
    row = '(e) cosub'

    def __init__(self, cfg):
        super().__init__(cfg)
        self.copies = int(cfg.cosub.num_submodels)
        self.soft = bool(cfg.cosub.soft)

    @property
    def lam(self) -> float:
        return float(self.cfg.cosub.lam)

    def describe(self) -> str:
        return (f'{self.name}: {self.row}, {self.copies} submodels, lambda {self.lam:g}, '
                f'{"soft" if self.soft else "hard"} targets')

    def loss(self, logits, targets, teacher):
        return cosub_loss(logits, targets, num_submodels=self.copies, lam=self.lam, loss=self.loss_type,
                          soft=self.soft)


# -- (b) knowledge distillation from a pre-trained teacher -------------------------------------------------------
def weights_sha256(state: Dict[str, Tensor]) -> str:
    """A hash of a model's weights (names, dtypes, shapes and bytes): the teacher's identity in checkpoints."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f'{key}:{t.dtype}:{tuple(t.shape)};'.encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_teacher(cfg, num_classes: int, device: torch.device) -> tuple:
    """The frozen teacher of kd / kd_cosub: (model in eval mode without gradients, identity dict)."""
    source = cfg.kd.teacher
    ckpt = backbones.load_file(source, allow_pickle=cfg.allow_pickle)
    state = backbones.checkpoint.extract_state_dict(ckpt, str(source))
    try:  # the name stored in our checkpoints, --teacher-model, or a ViT's read from the shapes (official files)
        name, args = backbones.checkpoint.architecture_of(ckpt, state, f'--teacher {source}', cfg.kd.teacher_model)
    except backbones.CheckpointError as e:
        raise MethodError(f'{e} (--teacher-model NAME: e.g. vit_h, or a timm name such as regnety_160)') from None
    classes = args.pop('num_classes', 0)
    if classes and classes != num_classes:
        raise MethodError(f'--teacher {source} predicts {classes} classes, the student {num_classes}; '
                          'a teacher must be trained on the classes of the student')
    args = {k: v for k, v in args.items() if k not in ('img_size', 'drop_path_rate', 'drop_path_mode',
                                                       'drop_path_schedule')}
    try:
        teacher = backbones.create_model(name, num_classes=num_classes, img_size=cfg.input_size,
                                         drop_path_mode='none', **args)
    except ValueError as e:
        raise MethodError(f'--teacher-model {name}: {e}') from None
    report = backbones.checkpoint.load_into(teacher, ckpt, str(source), strict=False)
    if report.missing or report.mismatched:
        raise MethodError(f'--teacher {source} does not fit --teacher-model {name} '
                          f'({backbones.checkpoint.fit_summary(report)}); pass the architecture it was trained as')
    teacher.requires_grad_(False)
    teacher.eval().to(device)
    identity = dict(source=str(source), model=name, sha256=weights_sha256(teacher.state_dict()))
    logger.info('teacher %s (%s): %.2fM parameters, frozen, sha256 %s', source, name,
                sum(p.numel() for p in teacher.parameters()) / 1e6, identity['sha256'][:12])
    return teacher, identity


class _OutsideTeacher:
    """Mix-in: a frozen outside model whose predictions on the same augmented batch are the soft targets."""
    teacher: nn.Module

    def teacher_logits(self, images, autocast):
        self.teacher.eval()  # never trained: the loop's model.train() does not reach it
        with torch.no_grad(), autocast():
            return self.teacher(images)


@register
class KnowledgeDistillation(_OutsideTeacher, Method):
    name = 'kd'
    row = '(b) KD'

    def __init__(self, cfg):
        super().__init__(cfg)
        self.kd = cfg.kd
        self.identity = None

    @property
    def lam(self) -> float:
        return float(self.kd.lam)

    def describe(self) -> str:
        return (f'{self.name}: {self.row}, lambda {self.lam:g}, {self.kd.target} targets at temperature '
                f'{self.kd.temperature:g}, teacher {self.kd.teacher} ({self.kd.teacher_model or "named by the file"})')

    def setup(self, trainer):
        if not trainer.eval_only:  # evaluation needs no teacher
            self.teacher, self.identity = load_teacher(self.cfg, trainer.num_classes, trainer.d.device)

    def loss(self, logits, targets, teacher):
        return kd_loss(logits, targets, teacher, lam=self.lam, loss=self.loss_type, kd_target=self.kd.target,
                       temperature=self.kd.temperature)

    def state_dict(self):
        return dict(teacher=self.identity)

    def load_state_dict(self, ckpt, path):
        if self.identity is None:  # --eval
            return
        before = ckpt.get('teacher') or {}
        if before.get('sha256') != self.identity['sha256']:
            raise MethodError(f'{path} was trained with the teacher {before.get("source")} ({before.get("model")}, '
                              f'sha256 {str(before.get("sha256"))[:12]}); --teacher {self.identity["source"]} has '
                              f'other weights (sha256 {self.identity["sha256"][:12]}): resume with the same teacher')


@register
class KDCosub(KnowledgeDistillation):
    name = 'kd_cosub'
    row = '(b)+(e) KD + cosub'

    def __init__(self, cfg):
        super().__init__(cfg)
        self.copies = int(cfg.cosub.num_submodels)

    @property
    def lam(self) -> float:  # one balance of label and distillation for both (kd_cosub_loss)
        return float(self.cfg.cosub.lam)

    def describe(self) -> str:
        return (f'{self.name}: {self.row}, {self.copies} submodels and the teacher {self.kd.teacher}, lambda '
                f'{self.lam:g} (cosub.lam), teacher targets {self.kd.target}')

    def loss(self, logits, targets, teacher):
        return kd_cosub_loss(logits, targets, teacher, num_submodels=self.copies, lam=self.lam, loss=self.loss_type,
                             soft=bool(self.cfg.cosub.soft), kd_target=self.kd.target,
                             temperature=self.kd.temperature)


# -- (c) mean teacher -------------------------------------------------------------------------------------------
@register
class MeanTeacher(_OutsideTeacher, Method):
    name = 'mean_teacher'
    row = '(c) mean teacher'

    @property
    def lam(self) -> float:
        return float(self.cfg.mean_teacher.lam)

    def describe(self) -> str:
        return f'{self.name}: {self.row}, lambda {self.lam:g}, EMA decay {self.cfg.mean_teacher.decay:g}'

    def setup(self, trainer):
        if trainer.fsdp:
            raise MethodError('method=mean_teacher keeps a full EMA copy of the weights on every rank; it does not '
                              'run with train.fsdp=True: use DDP (train.fsdp=False)')
        from timm.utils import ModelEmaV3
        # timm's EMA: a deep copy of the model (eval mode, no gradients), updated with foreach lerp after each step
        self.ema = ModelEmaV3(trainer.model, decay=float(self.cfg.mean_teacher.decay))
        self.ema.requires_grad_(False)
        self.teacher = self.ema.module

    def loss(self, logits, targets, teacher):
        return kd_loss(logits, targets, teacher, lam=self.lam, loss=self.loss_type)

    def after_step(self, model, step):
        self.ema.update(model)

    def eval_models(self, model):
        return {'': model, '_ema': self.ema.module}

    def state_dict(self):
        return dict(model_ema=self.ema.module.state_dict())

    def load_state_dict(self, ckpt, path):
        if 'model_ema' not in ckpt:
            raise MethodError(f'{path} holds no model_ema: it was not written by method=mean_teacher')
        backbones.checkpoint.load_into(self.ema.module, dict(model=ckpt['model_ema']), f'{path} (model_ema)',
                                       strict=True)


# -- (d) co-training of two models ------------------------------------------------------------------------------
class CoTrainingPair(nn.Module):
    """Two models trained side by side on the same batch: their logits are stacked (first model's rows first), so
    that cosub's loss over two "submodels" is co-training's. Each model keeps its own parameters and optimizer
    state (one optimizer over both models' groups: LAMB and AdamW act per parameter, and each model's gradients
    are clipped on their own, so this is exactly two optimizers)."""

    def __init__(self, first: nn.Module, second: nn.Module):
        super().__init__()
        self.models = nn.ModuleList([first, second])

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([m(x) for m in self.models])

    def no_weight_decay(self) -> set:
        return {f'models.{i}.{n}' for i, m in enumerate(self.models) for n in backbones.optim.no_weight_decay_names(m)}

    def layer_id(self, name: str) -> int:
        i, rest = name.removeprefix('models.').split('.', 1)
        return backbones.optim.param_layer_ids(self.models[int(i)])[rest]

    def reset_classifier(self, num_classes: int) -> None:
        for m in self.models:
            m.reset_classifier(num_classes)


@register
class CoTraining(Method):
    name = 'cotrain'
    row = '(d) co-training'
    # both models see each image once; their predictions are the two rows of cosub's loss
    copies = 1

    @property
    def lam(self) -> float:
        return float(self.cfg.cotrain.lam)

    def describe(self) -> str:
        return f'{self.name}: {self.row}, 2 models, lambda {self.lam:g}'

    def build_model(self, make):
        first = make()
        second = make()  # the random state has moved on: its own initialisation
        return CoTrainingPair(first, second)

    def loss(self, logits, targets, teacher):
        return cosub_loss(logits, targets, num_submodels=2, lam=self.lam, loss=self.loss_type)

    def parameter_sets(self, model):
        return [list(m.parameters()) for m in model.models]

    def eval_models(self, model):
        return {'': model.models[0], '_peer': model.models[1]}

    def split_model_state(self, state):
        parts = [{}, {}]
        for key, value in state.items():
            i, rest = key.removeprefix('models.').split('.', 1)
            parts[int(i)][rest] = value
        return dict(model=parts[0], peer_model=parts[1])

    def join_model_state(self, ckpt, path):
        if 'peer_model' not in ckpt:
            raise MethodError(f'{path} holds no peer_model: it was not written by method=cotrain')
        return {f'models.{i}.{k}': v for i, key in enumerate(('model', 'peer_model')) for k, v in ckpt[key].items()}


def method_of(config: dict) -> str:
    """The method a checkpoint's config was trained with (before `method` existed: cosub.enabled said it)."""
    config = config or {}
    if config.get('method'):
        return config['method']
    return 'baseline' if (config.get('cosub') or {}).get('enabled') is False else 'cosub'
