"""The README's quick start runs exactly as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quick_start_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    quick_start = blocks[0]
    assert "generate_text(" in quick_start and "from gpt2.gpt_model import GPT2" in quick_start
    namespace: dict = {}
    exec(compile(quick_start, "README.md (quick start)", "exec"), namespace)
    assert namespace["logits"].shape == (1, 4, 50257)
    assert capsys.readouterr().out.strip() == "torch.Size([1, 10])"


def test_readme_fine_tune_section_names_every_option_of_gpt2_finetune():
    """Every option `gpt2 finetune` takes (its function's arguments and dataclass sections) is
    named under '## Fine-tune': a section new to fine-tuning option by option, a section shared
    with `gpt2 train` as `--section.*`."""
    import dataclasses
    import typing

    from gpt2.commands.finetune import finetune

    text = README.read_text(encoding="utf-8")
    section = text.split("## Fine-tune\n", 1)[1].split("\n## ", 1)[0]
    expected = []
    for name, kind in typing.get_type_hints(finetune).items():
        if name == "return":
            continue
        if not dataclasses.is_dataclass(kind):
            expected.append(f"--{name}")
        elif kind.__module__ == "gpt2.finetune.options" and kind.__bases__ == (object,):
            expected += [f"--{name}.{f.name}" for f in dataclasses.fields(kind)]
        else:
            expected.append(f"--{name}.*")
    assert len(expected) > 15
    named = set(re.findall(r"--[a-z_]+(?:\.(?:[a-z_]+|\*))?", section))  # whole names: --data.val, --lora.*
    assert [option for option in expected if option not in named] == []
