"""Modules that moved when the package was laid out by concern keep their old import paths
(distillmeter/_moved.py): every public name each old module had, importable from its old
path, with a DeprecationWarning naming the new home; the one removed module says why."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

from distillmeter import _moved

# the public names each old module defined (read from the tree before the move, 6e8cf7c)
OLD_NAMES = {
    "accounting.merge": ("MergedRun RANKS_DIR RANK_FILE RankPart has_ranks load_parts "
                         "merge_parts merge_ranks merged_inputs rank_detail rank_dirs "
                         "ranks_finished write_merged"),
    "pipelines.config_sections": ("ArchConfig DataSourceConfig FieldsConfig FilesConfig "
                                  "LmEvalConfig ModelConfig"),
    "pipelines.distributed": "Distributed",
    "pipelines.file_data": ("FileTask RawRecord VERIFIERS exact_answer load_file_task "
                            "numeric_final_answer read_source render_prompt resolve_path "
                            "uses_chat_template"),
    "pipelines.generation": ("Generation GenerationBackend OnBatch TransformersBackend "
                             "check_sampling"),
    "pipelines.lm_eval_backend": ("EvalQuality PREFERRED_METRICS TaskScore available "
                                  "build_request model_args parse_results primary_quality "
                                  "run_lm_eval"),
    "pipelines.lm_eval_stage": ("LmEvalResult evaluate_lm_eval lm_eval_request "
                                "metric_value write_lm_eval"),
    "pipelines.memory": ("GIB HEADROOM ModelShape PhaseEstimate available_bytes check_fit "
                         "combine inference training"),
    "pipelines.rank_jobs": "Leader RankAborted follow open_rank_meter serve",
    "pipelines.real_models": ("Preflight compute_dtype dtype_bytes hub_cache_dir "
                              "load_tokenizer model_shape model_source preflight "
                              "run_tokenizer_model shared_vocab tokenizer_id_space"),
    "pipelines.sweep": ("RAY_KEYS RaySettings Sweep SweepPoint TEACHERS_DIR TOP_KEYS "
                        "apply_override check_path expand load_sweep parse_sweep "
                        "point_name"),
    "pipelines.sweep_ray": "RayRunner import_ray meters_host",
    "pipelines.sweep_run": "JobRecord run_sweep student_job summary_table teacher_job",
    "pipelines.vllm_backend": ("Engine VllmBackend VllmEngine VllmSettings availability "
                               "available logprobs_kwargs make_generation_backend "
                               "prompt_seed sampling_kwargs to_generation "
                               "topk_from_prompt_logprobs write_cache_vllm"),
}


@pytest.mark.parametrize("old", sorted(OLD_NAMES))
def test_old_path_serves_every_name_it_had(old):
    sys.modules.pop(f"distillmeter.{old}", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(f"distillmeter.{old}")
    moved = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert moved and "moved to distillmeter." in str(moved[0].message)
    missing = [n for n in OLD_NAMES[old].split() if not hasattr(module, n)]
    assert not missing, f"distillmeter.{old} lost {missing}"


def test_the_table_lists_every_moved_module():
    assert set(_moved.MOVED) == set(OLD_NAMES)


def test_removed_module_says_why():
    sys.modules.pop("distillmeter.pipelines.summary", None)
    with pytest.raises(ImportError, match="pipelines.summary was removed: .* analysis"):
        importlib.import_module("distillmeter.pipelines.summary")


def test_from_import_of_an_old_path_in_a_fresh_interpreter():
    # what a user's script does: no distillmeter module imported beforehand
    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            "try:\n    from distillmeter.pipelines.sweep import load_sweep\n"
            "except DeprecationWarning as w:\n    print('warned:', w)\n"
            "warnings.simplefilter('ignore')\n"
            "from distillmeter.pipelines.sweep import load_sweep\n"
            "from distillmeter.pipelines.scale.sweep import load_sweep as new\n"
            "print(load_sweep is new)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "warned: distillmeter.pipelines.sweep moved to distillmeter.pipelines.scale.sweep" \
        in out and out.strip().endswith("True")
