"""pytest plugin: run torchvision's own test/test_models.py with model building routed through omnizoo.

Loaded with ``-p tv_omnizoo_plugin`` (PYTHONPATH must contain this folder). Options:

  --oz-patch            route torchvision's model builders through omnizoo (without it: plain
                        torchvision = the baseline)
  --oz-models FILE      keep only these models in the per-model tests (one registered torchvision
                        name or fnmatch pattern a line, '#' comments; quantized builders are named
                        as torchvision registers them: quantized_resnet18, ...)
  --oz-part P           all (default) | sweep (per-model tests only) | other (hand-written tests only)
  --oz-expect-first     run the tests that compare against expect/*.pkl first (cold/warm runs: the
                        first omnizoo call on an empty OMNIZOO_HOME then happens in a test that
                        checks the seeded random init)
  --oz-accept-missing   with EXPECTTEST_ACCEPT=1: keep only the expect-writing tests whose
                        expect/*.pkl is missing (run.sh's regeneration step, plain torchvision)
  --oz-log FILE         append one JSON line per test outcome (survives a killed run); in omnizoo
                        mode each line also says how many omnizoo.create_model calls the test made

What is routed (every entry point test_models.py uses to build a registered model):
  * ``torchvision.models.get_model`` and ``get_model_builder`` (also in ``torchvision.models._api``):
    test_models.py parametrises over ``get_model_builder(name) for name in list_models(module)``;
  * the builder functions as attributes of the public namespaces (``torchvision.models``,
    ``.detection``, ``.segmentation``, ``.video``, ``.quantization``, ``.optical_flow``) and of the
    module that defines each (``torchvision.models.resnet.resnet50``): test_models.py calls e.g.
    ``models.resnet50(...)``, ``models.densenet121`` and ``models.detection.fasterrcnn_resnet50_fpn``.
The replacement keeps the builder's ``__name__``/``__module__``/signature (functools.wraps), so
test ids, expect-file names and ``list_models(module)`` are unchanged. A call
``builder(weights=W, **kw)`` becomes ``omnizoo.create_model("torchvision:" + registered_name [+ "." + tag],
pretrained=W is not None, **kw)``: ``weights=None`` (or absent) is pretrained=False; "DEFAULT", a
Weights enum member, or its string ("ResNet50_Weights.IMAGENET1K_V1" / "IMAGENET1K_V1") is resolved
by torchvision's own ``WeightsEnum.verify`` to the member whose name is the omnizoo tag; every other
keyword (num_classes, weights_backbone, aux_loss, quantize, norm_layer, ...) passes unchanged.
omnizoo itself calls torchvision's builders; a thread-local re-entrancy guard sends every call made
while omnizoo.create_model runs to the real torchvision function, so omnizoo's own code path is
exercised unchanged. Classes (``models.Inception3(...)``, ``models.VisionTransformer(...)``) are not
builders and are not routed; tests that only use them are reported with oz_calls=0.
Nothing in torchvision's test files is edited.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import sys
import threading

import pytest

# Per-model tests of test_models.py (parametrised over list_model_fns(module)).
SWEEP_TESTS = {
    'test_classification_model',
    'test_segmentation_model',
    'test_detection_model',
    'test_detection_model_validation',
    'test_video_model',
    'test_quantized_classification_model',
    'test_detection_model_trainable_backbone_layers',
    'test_raft',
}
# Tests that write/compare expect/ModelTester.test_<name>_expect.pkl (suffix for the file name).
EXPECT_TESTS = {
    'test_classification_model': '',
    'test_segmentation_model': '',
    'test_detection_model': '',
    'test_video_model': '',
    'test_quantized_classification_model': '_quantized',
    'test_vitc_models': '',
    'test_raft': '',
}
# Tests that need the network (real pretrained downloads). None in this test_models.py: the one
# test that asks for pretrained weights (test_detection_model_trainable_backbone_layers,
# weights_backbone="DEFAULT") mocks load_state_dict_from_url itself. Kept for later test files.
NEEDS_NETWORK: dict[str, str] = {}
# torch.compile / torch.export-only tests that take minutes on 2 CPUs: none in this test_models.py.
SLOW_NON_FACTORY: dict[str, str] = {}

PUBLIC_NAMESPACES = (
    'torchvision.models',
    'torchvision.models.detection',
    'torchvision.models.segmentation',
    'torchvision.models.video',
    'torchvision.models.quantization',
    'torchvision.models.optical_flow',
)

_state = threading.local()
_orig = {}
WRAPPERS = {}  # id(real builder) -> wrapper
REGISTERED = {}  # id(real builder or wrapper) -> registered name
STATS = {'omnizoo_calls': 0, 'inner_tv_calls': 0, 'inner_lookups': 0, 'positional_passthrough': 0,
         'patched_attrs': 0}


def _depth():
    return getattr(_state, 'depth', 0)


def _route(reg_name, kwargs):
    """builder(**kwargs) -> omnizoo.create_model('torchvision:' + reg_name[.tag], pretrained=..., **kwargs)."""
    import omnizoo

    kwargs = dict(kwargs)
    weights = kwargs.pop('weights', None)
    name = 'torchvision:' + reg_name
    pretrained = False
    if weights is not None:
        enum = _orig['get_model_weights'](reg_name)
        member = enum.verify(weights)  # torchvision's own resolution: "DEFAULT", "X_Weights.TAG", "TAG", member
        name += '.' + member.name
        pretrained = True
    _state.depth = _depth() + 1
    STATS['omnizoo_calls'] += 1
    try:
        return omnizoo.create_model(name, pretrained=pretrained, **kwargs)
    finally:
        _state.depth -= 1


def _make_wrapper(reg_name, real):
    @functools.wraps(real)
    def builder(*args, **kwargs):
        if _depth():
            # omnizoo's torchvision adapter building the model: the real torchvision builder
            STATS['inner_tv_calls'] += 1
            return real(*args, **kwargs)
        if args:
            # torchvision builders are keyword-only: let the real one raise its own TypeError
            STATS['positional_passthrough'] += 1
            return real(*args, **kwargs)
        return _route(reg_name, kwargs)

    return builder


def _oz_get_model_builder(name):
    fn = _orig['get_model_builder'](name)
    if _depth():
        STATS['inner_lookups'] += 1
        return fn
    return WRAPPERS.get(id(fn), fn)


def _oz_get_model(name, **config):
    if _depth():
        STATS['inner_tv_calls'] += 1
        return _orig['get_model'](name, **config)
    return _oz_get_model_builder(name)(**config)


def _patch():
    import importlib

    import torchvision.models as tvm
    import torchvision.models._api as api

    for sub in PUBLIC_NAMESPACES:
        importlib.import_module(sub)
    _orig.update(
        get_model=api.get_model,
        get_model_builder=api.get_model_builder,
        get_model_weights=api.get_model_weights,
    )
    for reg_name, fn in api.BUILTIN_MODELS.items():
        w = _make_wrapper(reg_name, fn)
        WRAPPERS[id(fn)] = w
        REGISTERED[id(fn)] = REGISTERED[id(w)] = reg_name
    for modname, mod in list(sys.modules.items()):
        if mod is None or not (modname == 'torchvision.models' or modname.startswith('torchvision.models.')):
            continue
        for attr, val in list(vars(mod).items()):
            w = WRAPPERS.get(id(val))
            if w is None or not callable(val):
                continue
            if modname in PUBLIC_NAMESPACES or getattr(val, '__module__', None) == modname:
                setattr(mod, attr, w)
                STATS['patched_attrs'] += 1
    api.get_model_builder = tvm.get_model_builder = _oz_get_model_builder
    api.get_model = tvm.get_model = _oz_get_model


def _check_patched():
    import torchvision.models as tvm

    assert tvm.get_model is _oz_get_model, 'torchvision.models.get_model lost the omnizoo patch'
    assert tvm.get_model_builder is _oz_get_model_builder, 'get_model_builder lost the omnizoo patch'
    assert id(tvm.resnet50) not in WRAPPERS, 'torchvision.models.resnet50 lost the omnizoo patch'


def pytest_addoption(parser):
    g = parser.getgroup('omnizoo')
    g.addoption('--oz-patch', action='store_true', default=False)
    g.addoption('--oz-models', default=None)
    g.addoption('--oz-part', default='all', choices=('all', 'sweep', 'other'))
    g.addoption('--oz-expect-first', action='store_true', default=False)
    g.addoption('--oz-accept-missing', action='store_true', default=False)
    g.addoption('--oz-log', default=None, help='append one JSON line per test result to this file')


_CONFIG = None
_CUR = {'start': 0}


def pytest_configure(config):
    # Runs before test_models.py is imported (collection), so the module-level
    # ``from torchvision.models import get_model_builder`` and ``models.densenet121`` in
    # parametrize lists already see the routed versions.
    global _CONFIG
    _CONFIG = config
    config._oz_log = config.getoption('--oz-log')
    config._oz_patch = config.getoption('--oz-patch')
    if config._oz_patch:
        os.environ.setdefault('OMNIZOO_OFFLINE', '1')
        _patch()


def _read_models(path):
    names = []
    with open(path) as fh:
        for line in fh:
            line = line.split('#', 1)[0].strip()
            if line:
                names.extend(line.split())
    return names


def _model_of(item):
    """Registered torchvision name of the model a per-model test is parametrised with."""
    fn = getattr(getattr(item, 'callspec', None), 'params', {}).get('model_fn')
    if fn is None:
        return None
    return REGISTERED.get(id(fn)) or _registered_name(fn)


_REG_CACHE = {}


def _registered_name(fn):
    if not _REG_CACHE:
        import torchvision.models._api as api

        for k, v in api.BUILTIN_MODELS.items():
            _REG_CACHE[id(v)] = k
    return _REG_CACHE.get(id(fn), getattr(fn, '__name__', ''))


def _expect_file(item):
    fn_name = getattr(item, 'originalname', item.name)
    fn = getattr(getattr(item, 'callspec', None), 'params', {}).get('model_fn')
    if fn_name not in EXPECT_TESTS or fn is None:
        return None
    base = os.path.join(os.path.dirname(os.path.realpath(str(item.fspath))), 'expect')
    return os.path.join(base, f'ModelTester.test_{fn.__name__}{EXPECT_TESTS[fn_name]}_expect.pkl')


def pytest_collection_modifyitems(session, config, items):
    models_file = config.getoption('--oz-models')
    wanted = _read_models(models_file) if models_file else None
    part = config.getoption('--oz-part')
    accept_missing = config.getoption('--oz-accept-missing')
    keep, drop = [], []
    for item in items:
        fn = getattr(item, 'originalname', item.name)
        ok = True
        if fn in NEEDS_NETWORK or fn in SLOW_NON_FACTORY:
            ok = False
        elif fn in SWEEP_TESTS:
            if part == 'other':
                ok = False
            elif wanted is not None:
                model = _model_of(item) or ''
                ok = any(fnmatch.fnmatchcase(model, w) for w in wanted)
        elif part == 'sweep':
            ok = False
        if ok and accept_missing:
            path = _expect_file(item)
            ok = path is not None and not os.path.exists(path)
            if ok and fn == 'test_quantized_classification_model':
                # upstream writes no expect file for these (its quantized_flaky_models)
                flaky = getattr(getattr(item, 'module', None), 'quantized_flaky_models', ())
                ok = item.callspec.params['model_fn'].__name__ not in flaky
        (keep if ok else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    if wanted:
        # model-major order (models file order), so a run cut short loses whole models, not whole tests
        order = {}
        for w in wanted:
            order.setdefault(w, len(order))

        def _key(it):
            if getattr(it, 'originalname', it.name) not in SWEEP_TESTS:
                return -1  # hand-written tests first, in file order
            model = _model_of(it) or ''
            return min((i for w, i in order.items() if fnmatch.fnmatchcase(model, w)), default=len(order))

        keep.sort(key=_key)  # stable
    if config.getoption('--oz-expect-first'):
        keep.sort(key=lambda it: 0 if getattr(it, 'originalname', it.name) in EXPECT_TESTS else 1)
    items[:] = keep


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _CUR['start'] = STATS['omnizoo_calls']
    if item.config._oz_patch:
        _check_patched()


def pytest_runtest_logreport(report):
    path = getattr(_CONFIG, '_oz_log', None) if _CONFIG is not None else None
    if not path:
        return
    if report.when == 'call' or report.outcome != 'passed':
        outcome = report.outcome
        if report.when != 'call' and outcome == 'failed':
            outcome = 'error'
        msg = ''
        if outcome != 'passed':
            lr = report.longrepr
            if isinstance(lr, tuple):  # skip: (file, line, reason)
                msg = str(lr[2])
            else:
                crash = getattr(lr, 'reprcrash', None)
                msg = crash.message if crash is not None else str(lr)
        rec = {'nodeid': report.nodeid, 'when': report.when, 'outcome': outcome,
               'duration': round(report.duration, 2), 'msg': msg[:2000]}
        if _CONFIG._oz_patch:
            rec['oz_calls'] = STATS['omnizoo_calls'] - _CUR['start']
        with open(path, 'a') as fh:
            fh.write(json.dumps(rec) + '\n')


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    mode = ('OMNIZOO (torchvision builders -> omnizoo.create_model)' if config._oz_patch
            else 'BASELINE (plain torchvision)')
    terminalreporter.write_line(f'[tv_omnizoo_plugin] mode: {mode}')
    if config._oz_patch:
        import omnizoo

        terminalreporter.write_line(f'[tv_omnizoo_plugin] omnizoo from {os.path.dirname(omnizoo.__file__)}')
        terminalreporter.write_line(
            f"[tv_omnizoo_plugin] builder attributes patched: {STATS['patched_attrs']}; "
            f"omnizoo.create_model calls: {STATS['omnizoo_calls']}, inner torchvision builder calls made "
            f"by omnizoo: {STATS['inner_tv_calls']} (+{STATS['inner_lookups']} get_model_builder look-ups that "
            f"returned the real builder), positional calls passed through: "
            f"{STATS['positional_passthrough']}"
        )
