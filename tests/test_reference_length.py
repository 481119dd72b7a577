"""benchmarks/reference_length.py: supernets' committed scores against stand-alone references of two lengths."""

from __future__ import annotations

import importlib.util
import json
import random
import statistics

import pytest

from spos.correlate import rank_correlation
from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("reference_length", ROOT / "benchmarks/reference_length.py")
reference_length = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference_length)

DRAW_A = ["a1", "a2", "a3", "shared"]
DRAW_B = ["shared", "b1", "b2", "b3"]


def write_journal(path, runs: dict[str, list[float]]):
    path.write_text("".join(json.dumps({"arch": arch, "seed": seed, "standalone_top1": top1}) + "\n"
                            for arch, values in runs.items() for seed, top1 in enumerate(values)))
    return str(path)


def correlate_result(archs, scores):
    return {"archs": [{"arch": a, "supernet_top1": s, "flops": 100 + i} for i, (a, s) in enumerate(zip(archs, scores))]}


@pytest.fixture
def files(tmp_path):
    short_a = {"a1": [0.60, 0.62], "a2": [0.65, 0.63], "a3": [0.58, 0.61], "shared": [0.70, 0.66]}
    short_b = {"shared": [0.55, 0.57], "b1": [0.64, 0.60], "b2": [0.59, 0.62], "b3": [0.61, 0.66]}  # shared retrained
    archs = DRAW_A + DRAW_B[1:]
    long = {a: [0.70 + 0.01 * ((i * 3) % 7), 0.71 + 0.01 * ((i * 5) % 7)] for i, a in enumerate(archs)}
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps(correlate_result(archs, [0.5, 0.3, 0.4, 0.2, 0.6, 0.1, 0.7])))
    named = tmp_path / "named.json"
    named.write_text(json.dumps({"s/10archs": correlate_result(DRAW_A, [0.1, 0.2, 0.3, 0.4]),
                                 "s/20archs": correlate_result(DRAW_B, [0.4, 0.7, 0.6, 0.5])}))
    return {"a": write_journal(tmp_path / "a.jsonl", short_a), "b": write_journal(tmp_path / "b.jsonl", short_b),
            "long": write_journal(tmp_path / "long.jsonl", long), "flat": str(flat), "named": str(named),
            "runs": {"short_a": short_a, "short_b": short_b, "long": long}}


def args(files, out=None):
    argv = ["--draw", "10", files["a"], "--draw", "20", files["b"],
            "--reference", "short", f"10={files['a']}", f"20={files['b']}", "--reference", "long", files["long"],
            "--supernet", "flat", files["flat"],
            "--supernet", "named", f"{files['named']}#s/10archs", f"{files['named']}#s/20archs"]
    return argv + (["--out", str(out)] if out else [])


def test_each_draw_is_held_against_its_own_runs_and_the_pool_against_the_first(files, tmp_path, capsys):
    reference_length.main(args(files, tmp_path / "out.json"))
    result = json.loads((tmp_path / "out.json").read_text())
    runs = files["runs"]
    mean = statistics.fmean
    by_draw = result["by_draw"]
    assert result["draws"] == {"10": 4, "20": 4, "pooled": 7}
    # draw 20 takes the shared arch's runs from its own journal, the pool from the first given
    assert by_draw["20"]["references"]["short"]["means"][0] == pytest.approx(mean(runs["short_b"]["shared"]))
    pooled_archs = DRAW_A + DRAW_B[1:]
    short_pooled = [mean({**runs["short_b"], **runs["short_a"]}[a]) for a in pooled_archs]
    assert by_draw["pooled"]["references"]["short"]["means"] == pytest.approx(short_pooled)
    named_20 = [0.4, 0.7, 0.6, 0.5]
    expected = rank_correlation(named_20, [mean(runs["short_b"][a]) for a in DRAW_B])[0]
    assert by_draw["20"]["supernet_tau"]["short"]["named"] == pytest.approx(expected)
    flat_pooled = [0.5, 0.3, 0.4, 0.2, 0.6, 0.1, 0.7]
    expected = rank_correlation(flat_pooled, [mean(runs["long"][a]) for a in pooled_archs])[0]
    assert by_draw["pooled"]["supernet_tau"]["long"]["flat"] == pytest.approx(expected)
    # the ensemble: each arch's mean score over the supernets (flat, and named's two results pooled)
    named_pooled = [0.1, 0.2, 0.3, 0.4, 0.7, 0.6, 0.5]
    ensemble = [mean(pair) for pair in zip(flat_pooled, named_pooled)]
    expected = rank_correlation(ensemble, [mean(runs["long"][a]) for a in pooled_archs])[0]
    assert by_draw["pooled"]["mean_score_tau"]["long"] == pytest.approx(expected)
    # by ensemble size: one supernet's mean tau at k = 1, the whole ensemble's at k = 2
    by_size = by_draw["pooled"]["ensemble_size_tau"]["long"]
    assert by_size == {"1": pytest.approx(by_draw["pooled"]["mean_supernet_tau"]["long"]), "2": pytest.approx(expected)}
    # how far the scores follow FLOPs (flat's archs have FLOPs 100, 101, ... in pooled order)
    pooled_flops = list(range(100, 107))
    against_flops = by_draw["pooled"]["score_flops_tau"]
    assert against_flops["supernets"]["flat"] == pytest.approx(rank_correlation(flat_pooled, pooled_flops)[0])
    assert against_flops["mean score"] == pytest.approx(rank_correlation(ensemble, pooled_flops)[0])
    agree = rank_correlation(flat_pooled, named_pooled)[0]
    assert by_draw["pooled"]["supernets_agree_tau"] == {"flat / named": pytest.approx(agree)}
    between = rank_correlation(short_pooled, [mean(runs["long"][a]) for a in pooled_archs])[0]
    assert by_draw["pooled"]["between_references"]["short / long"] == pytest.approx(between)
    assert by_draw["10"]["references"]["long"]["seeds"] == [0, 1]
    assert by_draw["10"]["references"]["long"]["ceiling_tau"] is not None
    printed = capsys.readouterr().out
    assert "short:10" in printed and "long:pooled" in printed and "references short / long on draw 20" in printed
    assert "scores against FLOPs on draw pooled" in printed
    assert "mean score of k supernets against long on draw pooled, mean tau over every k: k=1" in printed
    assert f"supernets against each other on draw pooled: tau {agree:.2f} on average" in printed


def test_a_result_nested_deeper_is_read_by_its_key_path(files, tmp_path):
    """`scoring_splits.py` writes each supernet's scores under scores/NAME: FILE#scores/NAME reads them,
    and a key holding "/" itself (s/10archs) still wins over a path."""
    named = json.loads(open(files["named"]).read())
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({"scores": {"s": {"10archs": named["s/10archs"]}, "t": named["s/20archs"]}}))
    argv = args(files, tmp_path / "literal.json")
    reference_length.main(argv)
    argv[argv.index(f"{files['named']}#s/10archs")] = f"{nested}#scores/s/10archs"
    argv[argv.index(f"{files['named']}#s/20archs")] = f"{nested}#scores/t"
    argv[-1] = str(tmp_path / "path.json")
    reference_length.main(argv)
    literal, path = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("literal", "path"))
    assert path["by_draw"] == literal["by_draw"]
    with pytest.raises(SystemExit, match="no 'scores/u' in .*nested.json"):
        reference_length.main([*argv[:-2], f"{nested}#scores/u"])


def test_missing_archs_and_unknown_names_are_one_line_errors(files, tmp_path):
    argv = args(files)
    with pytest.raises(SystemExit, match="no 's/30archs' in .*named.json"):
        reference_length.main([*argv[:-1], f"{files['named']}#s/30archs"])
    with pytest.raises(SystemExit, match=r"--supernet named has no b1 \(and 2 more of draw 20's archs\)"):
        reference_length.main(argv[:-1])
    with pytest.raises(SystemExit, match="--reference 30=.*: no --draw '30'; expected one of 10, 20"):
        reference_length.main([*argv, "--reference", "odd", f"30={files['a']}"])
    with pytest.raises(SystemExit, match="--reference odd has no b1"):
        reference_length.main([*argv, "--reference", "odd", files["a"]])
    with pytest.raises(SystemExit, match="no such file; expected a standalone.jsonl or a correlation.json"):
        reference_length.main([*argv, "--reference", "odd", str(tmp_path / "none.jsonl")])


def test_a_reference_can_be_read_from_a_correlation_result(files, tmp_path):
    result = correlate_result(DRAW_A, [0.1, 0.2, 0.3, 0.4])
    runs = {"a1": [0.50, 0.53], "a2": [0.52, 0.50], "a3": [0.49, 0.47], "shared": [0.55, 0.56]}
    for point in result["archs"]:
        point["standalone_runs"] = runs[point["arch"]]
    result["settings"] = {"seed": 3}
    path = tmp_path / "correlation.json"
    path.write_text(json.dumps(result))
    reference_length.main(["--draw", "10", files["a"], "--reference", "early", str(path),
                           "--reference", "long", files["long"], "--supernet", "flat", files["flat"],
                           "--out", str(tmp_path / "out.json")])
    by_draw = json.loads((tmp_path / "out.json").read_text())["by_draw"]
    assert list(by_draw) == ["10"]  # one draw: nothing to pool
    early = by_draw["10"]["references"]["early"]
    assert early["seeds"] == [3, 4]  # the run's first seed and on
    assert early["means"] == pytest.approx([statistics.fmean(runs[a]) for a in DRAW_A])


def test_unreadable_results_are_one_line_errors(files, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(SystemExit, match="reference_length: .*broken.json"):
        reference_length.main([*args(files)[:-4], "--supernet", "broken", str(broken)])
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"archs": [{"arch": "a1"}]}))
    with pytest.raises(SystemExit, match="partial.json: an arch there lacks 'arch', 'supernet_top1' or 'flops'"):
        reference_length.main([*args(files)[:-4], "--supernet", "partial", str(partial)])


def test_ensemble_size_tau_averages_over_every_group_of_that_size():
    scores = {"x": [0.1, 0.2, 0.3, 0.4], "y": [0.3, 0.1, 0.4, 0.2], "z": [0.4, 0.3, 0.1, 0.2]}
    reference = [0.5, 0.6, 0.7, 0.8]

    def tau(*names):
        ensemble = [statistics.fmean(scores[n][i] for n in names) for i in range(4)]
        return rank_correlation(ensemble, reference)[0]

    by_size = reference_length.ensemble_size_taus(scores, reference)
    assert list(by_size) == ["1", "2", "3"]
    assert by_size["1"] == pytest.approx(statistics.fmean([tau("x"), tau("y"), tau("z")]))
    assert by_size["2"] == pytest.approx(statistics.fmean([tau("x", "y"), tau("x", "z"), tau("y", "z")]))
    assert by_size["3"] == pytest.approx(tau("x", "y", "z"))


def test_ensemble_size_tau_samples_where_the_groups_are_too_many():
    """12 supernets have 924 groups of 6: a fixed sample of ENSEMBLE_GROUPS stands for them; sizes with
    fewer groups stay exact."""
    rng = random.Random(1)
    scores = {f"s{i}": [rng.random() for _ in range(6)] for i in range(12)}
    reference = [0.1, 0.3, 0.2, 0.5, 0.4, 0.6]
    by_size = reference_length.ensemble_size_taus(scores, reference)
    assert len(by_size) == 12
    assert by_size["1"] == pytest.approx(statistics.fmean(rank_correlation(s, reference)[0] for s in scores.values()))
    ensemble = [statistics.fmean(column) for column in zip(*scores.values())]
    assert by_size["12"] == pytest.approx(rank_correlation(ensemble, reference)[0])
    assert by_size == reference_length.ensemble_size_taus(scores, reference)  # the sample is fixed
    assert -1 <= by_size["6"] <= 1
