"""POST /qa: extractive answers equal the model's own best span; history reaches the model."""

import pytest
import torch

CONTEXT = "The meaning of life is 42. Sally lives in London and went to school in Leeds."


@pytest.fixture(scope="module")
def reference(tiny_dir):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir["extractive_qa"])
    model = AutoModelForQuestionAnswering.from_pretrained(tiny_dir["extractive_qa"]).eval()

    def answer(question: str, context: str) -> str:
        """Brute force over every span of at most 30 context tokens, or "unknown"."""
        encoded = tokenizer(question, context, return_offsets_mapping=True, return_tensors="pt")
        offsets = encoded.pop("offset_mapping")[0]
        with torch.no_grad():
            output = model(**encoded)
        start, end = output.start_logits[0], output.end_logits[0]
        context_tokens = [i for i, sid in enumerate(encoded.sequence_ids(0)) if sid == 1]
        best, span = float("-inf"), None
        for i in context_tokens:
            for j in context_tokens:
                if i <= j < i + 30 and float(start[i] + end[j]) > best:
                    best, span = float(start[i] + end[j]), (i, j)
        if float(start[0] + end[0]) > best:
            return "unknown"
        return context[int(offsets[span[0]][0]) : int(offsets[span[1]][1])].strip()

    return answer


def test_single_answer_equals_the_models_best_span(task_client, reference):
    response = task_client("/qa", {"question": "What is the meaning of life?", "context": CONTEXT})
    assert response.status_code == 200
    assert response.json["answer"] == reference("What is the meaning of life?", CONTEXT)


def test_history_is_given_to_the_model(task_client, reference):
    body = {"question": "Where does she live?", "context": CONTEXT, "prev_q": ["Who went to Leeds?"], "prev_a": ["Sally"]}
    response = task_client("/qa", body)
    assert response.json["answer"] == reference("Who went to Leeds? Sally Where does she live?", CONTEXT)


def test_batch_with_per_item_history(task_client, reference):
    body = {
        "question": ["What is the meaning of life?", "Where does Sally live?"],
        "context": [CONTEXT, "Sally lives in London"],
        "prev_q": [["What is not the meaning of life?"], ["Where did Sally go to school?"]],
        "prev_a": [["unknown"], ["Leeds"]],
    }
    response = task_client("/qa", body)
    assert response.status_code == 200
    assert response.json["answer"] == [
        reference("What is not the meaning of life? unknown What is the meaning of life?", CONTEXT),
        reference("Where did Sally go to school? Leeds Where does Sally live?", "Sally lives in London"),
    ]


def test_a_flat_history_with_a_batch_is_shared_by_every_item(task_client, reference):
    # Backprop's client 0.0.x flattened a batch's histories into one list.
    body = {"question": ["Where does she live?", "Where did she go to school?"], "context": [CONTEXT, CONTEXT],
            "prev_q": ["Who went to Leeds?"], "prev_a": ["Sally"]}
    response = task_client("/qa", body)
    assert response.json["answer"] == [reference(f"Who went to Leeds? Sally {q}", CONTEXT) for q in body["question"]]


def test_an_empty_history_with_a_batch_is_no_history(task_client, reference):
    questions = ["What is the meaning of life?", "Where does Sally live?"]
    response = task_client("/qa", {"question": questions, "context": [CONTEXT] * 2, "prev_q": [], "prev_a": []})
    assert response.json["answer"] == [reference(q, CONTEXT) for q in questions]


def test_backprop_t5_gets_its_own_prompt_format(task_client, tiny_dir):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir["seq2seq"])
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_dir["seq2seq"])
    prompt = "q: Who? a: Sally q: Where? c: " + CONTEXT
    encoded = tokenizer([prompt], return_tensors="pt")
    want = tokenizer.batch_decode(
        model.generate(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"], do_sample=False, max_length=96),
        skip_special_tokens=True,
    )[0]

    body = {"question": "Where?", "context": CONTEXT, "prev_q": ["Who?"], "prev_a": ["Sally"],
            "model": "t5-base-qa-summary-emotion"}
    assert task_client("/qa", body).json["answer"] == want


@pytest.mark.parametrize(
    "body,field",
    [
        ({"question": "q", "context": "c", "prev_q": ["a", "b"], "prev_a": ["x"]}, "prev_a"),
        ({"question": "q", "context": "c", "prev_q": ["a"]}, "prev_a"),
        ({"question": ["q", "r"], "context": "c"}, "context"),
        ({"question": ["q", "r"], "context": ["c"]}, "context"),
        ({"question": ["q"], "context": ["c"], "prev_q": [["a"], ["b"]], "prev_a": [["x"], ["y"]]}, "prev_q"),
        ({"question": "q", "context": "c", "prev_q": [["a"]], "prev_a": [["x"]]}, "prev_q"),
        ({"question": "q"}, "context"),
    ],
)
def test_inconsistent_shapes_are_422_naming_the_field(task_client, body, field):
    response = task_client("/qa", body)
    assert response.status_code == 422
    assert field in response.json["errors"], response.json


def test_a_very_long_context_is_answered_not_a_crash(task_client):
    response = task_client("/qa", {"question": "What?", "context": "The meaning of life is 42. " * 500})
    assert response.status_code == 200
    assert isinstance(response.json["answer"], str)


@pytest.fixture(scope="module")
def zebra_model_dir(tmp_path_factory):
    """A QA model rigged to answer the word "zebra" wherever it stands: no
    transformer layers, "zebra"'s embedding and both span heads along one
    direction, so its start and end logits dwarf every other token's."""
    from transformers import AutoTokenizer, BertForQuestionAnswering

    from ..tiny_models import _bert_config, _save_with_bert_tokenizer, packaged_minilm_dir

    torch.manual_seed(5)
    model = BertForQuestionAnswering(_bert_config(num_hidden_layers=0))
    zebra = AutoTokenizer.from_pretrained(packaged_minilm_dir()).convert_tokens_to_ids("zebra")
    direction = torch.sign(torch.randn(model.config.hidden_size))
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[zebra] = 50 * direction
        model.qa_outputs.weight[:] = direction
        model.qa_outputs.bias.zero_()
    root = tmp_path_factory.mktemp("zebra-models")
    _save_with_bert_tokenizer(model, str(root / "distilbert-base-cased-distilled-squad"))
    return str(root)


def test_an_answer_beyond_the_models_input_limit_is_found(client_for, zebra_model_dir):
    # The model reads 128 tokens; the answer stands after about 600.
    api = client_for(MODEL_DIR=zebra_model_dir)
    client, headers = api.client, api.headers
    filler = "The river runs past the old mill and the green fields. " * 50
    body = {
        "question": ["Which animal?", "Which animal?", "Which animal?"],
        "context": [filler + "Then came a zebra.", "A zebra came first. " + filler, "A zebra."],
    }
    response = client.post("/qa", json=body, headers=headers)
    assert response.status_code == 200
    assert response.json["answer"] == ["zebra", "zebra", "zebra"]


def test_a_long_history_is_cut_from_the_oldest_end(task_client, reference):
    history_q = [f"Old question number {n} about the weather?" for n in range(30)]
    body = {"question": "Where does Sally live?", "context": CONTEXT, "prev_q": history_q, "prev_a": ["no"] * 30}
    response = task_client("/qa", body)
    assert response.status_code == 200
    assert isinstance(response.json["answer"], str)


def test_a_question_longer_than_the_model_reads_is_422(task_client):
    response = task_client("/qa", {"question": "Which animal is it really? " * 30, "context": "A zebra came."})
    assert response.status_code == 422
    assert "Shorten the question" in response.json["message"]
