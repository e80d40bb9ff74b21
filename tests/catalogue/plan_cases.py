"""Plans and quantizer specs: files that are not plans, specs that name no quantizer or
impossible widths, layers and slots the model lacks."""

from __future__ import annotations

from catalogue import QUICK_TRAIN, Case, Env


def plan_file(text: str | bytes, name: str = "plan.yaml"):
    return lambda e: e.write(name, text)


def cost_plan(make) -> callable:
    return lambda e: ["cost", f"plan={make(e)}"]


def train_plan(make) -> callable:
    return lambda e: ["train", "data=jets_file", f"data.path={e.data}", *QUICK_TRAIN, f"plan={make(e)}"]


def kernel_plan(spec: str, slot: str = "kernel") -> callable:
    """A plan whose default ``slot`` is ``spec`` (everything else float)."""
    other = {s: "null" for s in ("kernel", "bias", "activation") if s != slot}
    body = ", ".join([f'{slot}: "{spec}"'] + [f"{k}: {v}" for k, v in other.items()])
    return plan_file(f"name: p\ndefault: {{{body}}}\n")


def spec_case(id_: str, spec: str, fragment: str, slot: str = "kernel", **kw) -> Case:
    return Case(id_, cost_plan(kernel_plan(spec, slot)), fragment, **kw)


CASES = [
    Case("plan-missing-file", lambda e: ["cost", f"plan={e.tmp / 'nope.yaml'}"],
         "does not exist"),
    Case("plan-missing-file-train", lambda e: ["train", "data=jets_file", f"data.path={e.data}",
                                               *QUICK_TRAIN, f"plan={e.tmp / 'nope.yaml'}"],
         "no such plan file"),
    Case("plan-empty-file", cost_plan(plan_file("")), "is empty; a plan needs at least `name`"),
    Case("plan-invalid-yaml", cost_plan(plan_file("name: [unclosed\n")), "is not valid YAML"),
    Case("plan-a-list", cost_plan(plan_file("- a\n- b\n")), "a quantization plan must be a mapping"),
    Case("plan-not-utf8", train_plan(plan_file("name: caf\xe9\ndefault: {kernel: null, bias: null, "
                                               "activation: null}\n".encode("latin-1"))),
         "is not UTF-8 text", subprocess=True),
    Case("plan-not-utf8-cost", cost_plan(plan_file(b"name: \xff\xfe\n")), "is not UTF-8 text"),
    Case("plan-a-directory", lambda e: ["cost", f"plan={e.tmp}"], "is a directory; pass the path"),
    Case("plan-a-directory-train", lambda e: ["train", "data=jets_file", f"data.path={e.data}",
                                              *QUICK_TRAIN, f"plan={e.tmp}"], "is a directory"),
    Case("plan-unknown-top-key", cost_plan(plan_file("name: p\ndefualt: {kernel: null}\n")),
         "defualt"),
    Case("plan-default-not-mapping", cost_plan(plan_file("name: p\ndefault: 6\n")),
         "`default` must map kernel/bias/activation to specs"),
    Case("plan-layers-not-mapping", cost_plan(plan_file("name: p\ndefault: {kernel: null}\nlayers: [a]\n")),
         "`layers` must map layer names"),
    Case("plan-unknown-layer", cost_plan(plan_file(
        "name: p\ndefault: {kernel: null}\nlayers: {dense_9: {kernel: ternary}}\n")), "dense_9"),
    Case("plan-unknown-slot", cost_plan(plan_file(
        "name: p\ndefault: {kernel: null}\nlayers: {relu_1: {kernel: ternary}}\n")), "relu_1"),
    Case("plan-cnn-layers-on-jet-model", cost_plan(plan_file(
        "name: p\ndefault: {kernel: null}\nlayers: {conv_1: {kernel: ternary}}\n")), "conv_1"),
    Case("plan-name-with-path", cost_plan(plan_file("name: ../../q6 evil\ndefault: {kernel: null}\n")),
         "plan name='../../q6 evil' cannot be used"),
    Case("plan-override-unknown-layer", lambda e: ["cost", "quant=q6",
                                                   "+quant.layers.dense_9.kernel=ternary"],
         "dense_9"),
    spec_case("spec-unknown-quantizer", "quantized_bitz(4,0)", "quantized_bitz"),
    spec_case("spec-unknown-argument", "quantized_bits(4,0,alfa=1)", "alfa"),
    spec_case("spec-bits-zero", "quantized_bits(0,0)", "bits=0 must be at least 1"),
    spec_case("spec-bits-negative", "quantized_bits(-3,0)", "bits=-3 must be at least 1"),
    Case("spec-bits-4096", train_plan(kernel_plan("quantized_bits(4096,0,alpha=1)")),
         "bits=4096 is more than 32", subprocess=True),
    spec_case("spec-bits-4096-cost", "quantized_bits(4096,0,alpha=1)", "bits=4096 is more than 32"),
    spec_case("spec-relu-bits-4096", "quantized_relu(4096,0)", "bits=4096 is more than 32",
              slot="activation"),
    spec_case("spec-po2-bits-4096", "quantized_po2(4096)", "bits=4096 is more than 32"),
    spec_case("spec-integer-far-left", "quantized_bits(8,-4096)", "integer=-4096"),
    spec_case("spec-integer-over-bits", "quantized_bits(4,8)", "integer=8 exceeds bits=4"),
    spec_case("spec-bits-fractional", "quantized_bits(2.5,0)", "must be an integer number of bits"),
    spec_case("spec-bits-text", "quantized_bits('four',0)", "must be an integer number of bits"),
    spec_case("spec-syntax", "quantized_bits(4,0", "quantized_bits(4,0"),
    spec_case("spec-code", "__import__('os').system('touch PWNED')", "__import__",
              check=lambda e: _no_file(e, "PWNED")),
    spec_case("spec-alpha", "quantized_bits(4,0,alpha='bogus')", "alpha='bogus' is not supported"),
    spec_case("spec-negative-slope", "quantized_relu(4,0,negative_slope=0.3)",
              "negative_slope=0.3 must be 0 or a power of two", slot="activation"),
    Case("spec-dict-without-class-name", cost_plan(plan_file(
        "name: p\ndefault: {kernel: {config: {bits: 4}}}\n")), "which is not a quantizer spec"),
    Case("spec-input-garbage", cost_plan(plan_file(
        "name: p\ninput: 'nonsense(('\ndefault: {kernel: null}\n")), "nonsense"),
]


def _no_file(e: Env, name: str) -> None:
    assert not (e.tmp / name).exists(), f"a spec ran code: {name} exists"
