"""Firmware settings: backend, vendor, project knobs and names, each refused before a project
is written (the finished run they point at must not gain a firmware directory)."""

from __future__ import annotations

from catalogue import Case, Env, nothing_outside


def firmware(*more: str):
    return lambda e: ["firmware", f"run={e.finished}", *more]


def backend_list() -> str:
    from hqrun.firmware import backend_names

    return ", ".join(backend_names())


def no_marker(e: Env) -> None:
    assert not (e.tmp / "PWNED").exists(), "a config value ran a shell command"


CASES = [
    Case("firmware-backend-unknown", firmware("firmware.backend=vhdl"),
         f"firmware backend 'vhdl' is unknown; choose one of {backend_list()}", subprocess=True),
    Case("firmware-backend-typo", firmware("firmware.backend=hls4mll"), "choose one of"),
    Case("firmware-vendor-unknown", firmware("firmware.vendor=Quartus"),
         "firmware.vendor='Quartus' is not supported by the hls4ml backend; use Vitis"),
    Case("firmware-vendor-lowercase", firmware("firmware.vendor=vitis"),
         "firmware.vendor='vitis' is not supported"),
    Case("firmware-synthesize-unknown", firmware("firmware.synthesize=sometimes"),
         "synthesize='sometimes': use auto, always or never"),
    Case("firmware-io-type", firmware("firmware.io_type=io_stream"),
         "io_type='io_stream': hqrun exports io_parallel only"),
    Case("firmware-strategy", firmware("firmware.strategy=Fast"),
         "strategy='Fast': use Latency or Resource"),
    Case("firmware-reuse-factor-zero", firmware("firmware.reuse_factor=0"), "reuse_factor=0 must be"),
    Case("firmware-clock-zero", firmware("firmware.clock_period=0"), "clock_period=0.0 must be positive"),
    Case("firmware-clock-negative", firmware("firmware.clock_period=-5"), "must be positive"),
    Case("firmware-input-type", firmware("firmware.input_type=float"),
         "firmware input_type 'float' is not an HLS type"),
    Case("firmware-max-samples-negative", firmware("firmware.max_samples=-1"),
         "firmware.max_samples=-1"),
    Case("firmware-softmax-table-zero", firmware("firmware.softmax_table_size=0"),
         "firmware.softmax_table_size=0"),
    Case("firmware-softmax-result", firmware("firmware.softmax_result=fixed16"),
         "firmware.softmax_result='fixed16'"),
    Case("firmware-synth-timeout-zero", firmware("firmware.synth_timeout_s=0"),
         "firmware.synth_timeout_s=0"),
    Case("firmware-project-name-shell", lambda e: ["firmware", f"run={e.finished}",
                                                   f"firmware.project_name='fw$(date>{e.tmp / 'PWNED'})'"],
         "firmware.project_name='fw$(date>", check=no_marker),
    Case("firmware-project-name-traversal", firmware("firmware.project_name=../../escape"),
         "firmware.project_name='../../escape' is not a usable identifier",
         check=nothing_outside("escape*")),
    Case("firmware-project-name-keyword", firmware("firmware.project_name=int"),
         "firmware.project_name='int' is not a usable identifier"),
    Case("firmware-project-name-digit", firmware("firmware.project_name=1fw"),
         "firmware.project_name='1fw' is not a usable identifier"),
    Case("firmware-out-dir-climbs-out", firmware("firmware.out_dir=../../fw"),
         "firmware.out_dir='../../fw' climbs out of its base directory",
         check=nothing_outside("fw")),
    Case("firmware-out-dir-foreign", lambda e: ["firmware", f"run={e.finished}",
                                                f"firmware.out_dir={_foreign_dir(e)}"],
         "exists and is not an hqrun firmware directory; refusing to overwrite it",
         leaves_run_dir=True),
    Case("firmware-key-typo", firmware("firmware.reuse=2"), "Did you mean firmware.reuse_factor?"),
]


def _foreign_dir(e: Env):
    d = e.tmp / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("my own files")
    return d


def _rtl_cases() -> list[Case]:
    """The RTL backend's settings (``firmware.rtl.*``), refused before any Verilog is written."""
    def rtl(*more: str):
        return lambda e: ["firmware", f"run={e.finished}", "firmware.backend=rtl", *more]

    return [
        Case("firmware-rtl-latency-negative", rtl("firmware.rtl.latency_cycles=-1"),
             "latency_cycles=-1"),
        Case("firmware-rtl-latency-huge", rtl("firmware.rtl.latency_cycles=100000"),
             "latency_cycles=100000"),
        Case("firmware-rtl-latency-text", rtl("firmware.rtl.latency_cycles=fast"),
             "firmware.rtl.latency_cycles: Value 'fast'"),
        Case("firmware-rtl-simulator", rtl("firmware.rtl.simulator=modelsim"), "simulator='modelsim'"),
        Case("firmware-rtl-family", rtl("firmware.rtl.family=xcvu"), "xcvu"),
        Case("firmware-rtl-mapper", rtl("firmware.rtl.mapper=fast"), "mapper='fast'"),
        Case("firmware-rtl-yosys", rtl("firmware.rtl.yosys=vivado"), "yosys='vivado'"),
        Case("firmware-rtl-sim-timeout-zero", rtl("firmware.rtl.sim_timeout_s=0"), "sim_timeout_s"),
        Case("firmware-rtl-key-typo", rtl("firmware.rtl.latency=2"),
             "Did you mean firmware.rtl.latency_cycles or"),
        Case("firmware-rtl-part-unknown-family", rtl("firmware.part=ep4ce22"), "ep4ce22"),
    ]


CASES += _rtl_cases()
