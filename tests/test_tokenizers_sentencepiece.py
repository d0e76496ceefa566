"""SentencePiece: train BPE and unigram models on Nepali sentences written for this test,
round-trip Nepali exactly, use the model in `gpt2 prepare`, and refuse impossible sizes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2.commands.tokenizer import tokenizer_train
from gpt2.data.prepare import PrepareOptions, prepare
from gpt2.data.sources import resolve_sources
from gpt2.data.train_tokenizer import SentencePieceOptions, train_sentencepiece
from gpt2.tokenizers import SentencePieceTokenizer, get_tokenizer, load_tokenizer

NEPALI = """नेपाल हिमालयको काखमा रहेको एउटा सुन्दर देश हो।
काठमाडौं उपत्यकामा धेरै पुराना मन्दिरहरू छन्।
बिहान सबेरै उठेर म चिया पिउँछु र पत्रिका पढ्छु।
मेरो गाउँमा धानका खेतहरू हरिया देखिन्छन्।
हिउँदमा पहाडतिर निकै जाडो हुन्छ, तर घाम लाग्दा रमाइलो हुन्छ।
विद्यार्थीहरू विद्यालयमा गणित, विज्ञान र नेपाली पढ्छन्।
सगरमाथा संसारकै सबैभन्दा अग्लो हिमाल हो।
हामी दसैंमा टीका लगाउँछौं र परिवारसँग भेट्छौं।
तिहारमा दियो बालिन्छ र घरहरू झिलिमिली हुन्छन्।
पोखराको फेवा तालमा डुंगा चलाउन धेरै पर्यटक आउँछन्।
मेरी आमा मीठो दाल, भात र तरकारी पकाउनुहुन्छ।
किसानहरू वर्षा याममा धान रोप्छन्।
पुस्तकालयमा शान्त वातावरणमा पढ्न पाइन्छ।
बजारमा ताजा फलफूल र सागसब्जी किन्न पाइन्छ।
नदीको किनारमा बसेर हामीले सूर्यास्त हेर्यौं।
गुरुले विद्यार्थीलाई धैर्य राखेर पढाउनुभयो।
बाटोमा हिँड्दा सडक नियम पालना गर्नुपर्छ।
रातको आकाशमा असंख्य ताराहरू चम्किरहेका थिए।
हजुरबुबाले पुराना दिनका कथा सुनाउनुभयो।
मेलामा बच्चाहरू रमाउँदै पिङ खेलिरहेका थिए।
""" * 3

SENTENCES = [
    "नेपाल हिमालयको काखमा रहेको एउटा सुन्दर देश हो।",
    "  दुई खाली ठाउँ,\tट्याब र\nनयाँ हरफ पनि जोगिन्छन्। 123",
    "अपरिचित अक्षर: ঌ ૐ 🙂 Ω — बाइट फलब्याकले जोगाउँछ।",
]


@pytest.fixture(scope="module")
def nepali_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("nepali") / "nepali.txt"
    path.write_text(NEPALI, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def nepali_bpe(nepali_file) -> SentencePieceTokenizer:
    return train_sentencepiece(resolve_sources([str(nepali_file)]),
                               options=SentencePieceOptions(vocab_size=400, model_type="bpe", threads=1))


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_trained_model_round_trips_nepali(nepali_file, model_type):
    tok = train_sentencepiece(resolve_sources([str(nepali_file)]),
                              options=SentencePieceOptions(vocab_size=350, model_type=model_type, threads=1))
    assert tok.vocab_size == 350 and tok.eot_id == 2
    for sentence in SENTENCES:
        ids = tok.encode(sentence)
        assert tok.decode(ids) == sentence
    # Pieces longer than one character were learned: Nepali words take fewer tokens than bytes.
    first = SENTENCES[0]
    assert len(tok.encode(first)) < len(first)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\u2581", blacklist_categories=("Cs",))))
def test_trained_model_round_trips_any_text(nepali_bpe, text):
    assert nepali_bpe.decode(nepali_bpe.encode(text)) == text


def test_trained_model_saves_and_loads(tmp_path, nepali_bpe):
    nepali_bpe.save(tmp_path / "tok")
    again = get_tokenizer(tmp_path / "tok")
    assert again.identity() == nepali_bpe.identity()
    assert get_tokenizer(tmp_path / "tok" / "tokenizer.model").encode(SENTENCES[0]) == \
        nepali_bpe.encode(SENTENCES[0])


def test_cli_train_then_prepare(tmp_path, nepali_file, capsys):
    from gpt2.data.loaders import RandomWindowLoader

    tokenizer_train(input=str(nepali_file), out=str(tmp_path / "tok"), vocab_size=360)
    assert "360 pieces" in capsys.readouterr().out
    meta = prepare([str(nepali_file)], tmp_path / "shards", tokenizer=str(tmp_path / "tok"),
                   options=PrepareOptions(workers=2, progress=False))
    assert meta.tokenizer == load_tokenizer(tmp_path / "tok").identity()
    x, _ = RandomWindowLoader(tmp_path / "shards", batch_size=2, context_length=16).next_batch()
    assert int(x.max()) < 360
    with pytest.raises(ValueError, match="already holds a tokenizer"):
        tokenizer_train(input=str(nepali_file), out=str(tmp_path / "tok"), vocab_size=360)


def test_vocab_larger_than_corpus_allows(nepali_file, tmp_path):
    with pytest.raises(ValueError, match=r"--vocab_size 50,000 is larger than this corpus allows; "
                                         r"use --vocab_size [\d,]+ or less"):
        train_sentencepiece(resolve_sources([str(nepali_file)]),
                            options=SentencePieceOptions(vocab_size=50_000, threads=1))
    with pytest.raises(ValueError,
                       match=r"--vocab_size 100 is too small: this corpus needs at least [\d,]+"):
        train_sentencepiece(resolve_sources([str(nepali_file)]),
                            options=SentencePieceOptions(vocab_size=100, threads=1))
    with pytest.raises(ValueError, match="--model_type 'wordpiece'"):
        train_sentencepiece(resolve_sources([str(nepali_file)]),
                            options=SentencePieceOptions(model_type="wordpiece"))


def test_without_a_vocab_size_one_is_suggested_from_the_corpus_size(nepali_file, tmp_path, capsys):
    from gpt2.data.train_tokenizer import suggested_vocab_size

    assert [suggested_vocab_size(n) for n in (10_000, 580_000, 5_000_000, 10**8, 10**10)] == \
        [1_000, 1_500, 4_500, 20_000, 32_000]
    tokenizer_train(input=str(nepali_file), out=str(tmp_path / "tok"))
    err = capsys.readouterr().err
    assert "no --vocab_size: 1,000 pieces suggested" in err
    assert load_tokenizer(tmp_path / "tok").vocab_size == 1_000


def test_a_suggested_size_is_lowered_to_what_a_repetitive_corpus_allows(tmp_path):
    words = ["नेपाल", "हिमाल", "पहाड", "तराई", "गाउँ", "सहर", "नदी", "खोला"]
    text = "\n".join(" ".join(words[(i * j) % len(words)] for j in range(1, 9)) for i in range(20_000))
    (tmp_path / "small.txt").write_text(text, encoding="utf-8")  # ~0.9 MB, 8 distinct words
    sources = resolve_sources([str(tmp_path / "small.txt")])
    with pytest.raises(ValueError, match=r"use --vocab_size ([\d,]+) or less") as asked:
        train_sentencepiece(sources, options=SentencePieceOptions(vocab_size=2_000, threads=1))
    limit = int(re.search(r"use --vocab_size ([\d,]+) or less", str(asked.value))[1].replace(",", ""))
    tok = train_sentencepiece(sources, options=SentencePieceOptions(threads=1))  # suggested: 2,000
    assert tok.vocab_size == limit < 2_000  # lowered to fit, not refused
