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
