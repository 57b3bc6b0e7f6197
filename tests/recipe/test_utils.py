"""The recipe's own job-launch and data-dir utilities (utils/)."""

import subprocess
import textwrap

import pytest


def sh(cmd, cwd, check=True, **kw):
    return subprocess.run(cmd, cwd=cwd, shell=isinstance(cmd, str), text=True,
                          capture_output=True, check=check, **kw)


# ---------------------------------------------------------------- parse_options.sh
@pytest.fixture
def options_script(tmp_path, recipe_dir):
    script = tmp_path / "opts.sh"
    script.write_text(textwrap.dedent(f"""\
        #!/usr/bin/env bash
        set -euo pipefail
        stage=1
        stop_stage=10
        use_gpu=false
        train_args=""
        help_message="Usage: opts.sh [--stage N]"
        . {recipe_dir}/utils/parse_options.sh
        echo "stage=$stage stop_stage=$stop_stage use_gpu=$use_gpu train_args=[$train_args] rest=[$*]"
        """))
    script.chmod(0o755)
    return script


def test_parse_options_forms(options_script, tmp_path):
    out = sh([str(options_script), "--stage", "3", "--stop-stage=5", "--use_gpu", "true",
              "--train_args", "--max_epoch 1 --lr=2", "a", "b"], tmp_path).stdout
    assert out.strip() == "stage=3 stop_stage=5 use_gpu=true train_args=[--max_epoch 1 --lr=2] rest=[a b]"


def test_parse_options_errors_and_help(options_script, tmp_path):
    r = sh([str(options_script), "--stgae", "3"], tmp_path, check=False)
    assert r.returncode != 0 and "unknown option '--stgae'" in r.stderr
    r = sh([str(options_script), "--use-gpu", "yes"], tmp_path, check=False)
    assert r.returncode != 0 and "expects true or false" in r.stderr
    r = sh([str(options_script), "--stage"], tmp_path, check=False)
    assert r.returncode != 0 and "needs a value" in r.stderr
    r = sh([str(options_script), "--help"], tmp_path)
    assert "Usage: opts.sh" in r.stdout


# ---------------------------------------------------------------- run.pl
def test_run_pl_array_substitutes_job(recipe_dir, tmp_path):
    run_pl = recipe_dir / "utils" / "run.pl"
    sh([str(run_pl), "JOB=1:4", "log/job.JOB.log", "echo", "job=JOB", "quoted arg's", "$HOME"], tmp_path)
    for j in range(1, 5):
        text = (tmp_path / f"log/job.{j}.log").read_text()
        assert f"job={j} quoted arg's $HOME\n" in text  # arguments arrive unchanged
        assert "# Ended (code 0)" in text


def test_run_pl_runs_jobs_in_parallel(recipe_dir, tmp_path):
    run_pl = recipe_dir / "utils" / "run.pl"
    import time

    start = time.time()
    sh([str(run_pl), "--max-jobs-run", "4", "JOB=1:4", "log/s.JOB.log", "sleep 1"], tmp_path)
    assert time.time() - start < 3.0  # four 1 s jobs at once, not 4 s in a row


def test_run_pl_reports_failed_jobs(recipe_dir, tmp_path):
    run_pl = recipe_dir / "utils" / "run.pl"
    r = sh([str(run_pl), "JOB=1:3", "log/f.JOB.log", "if [ JOB -eq 2 ]; then echo boom; exit 3; fi"],
           tmp_path, check=False)
    assert r.returncode != 0
    assert "1 / 3 failed" in r.stderr and "log/f.2.log" in r.stderr and "log/f.1.log" not in r.stderr
    log2 = (tmp_path / "log/f.2.log").read_text()
    assert "boom" in log2 and "# Ended (code 3)" in log2


def test_run_pl_single_job_accepts_launcher_options(recipe_dir, tmp_path):
    # espnet2.bin.launch calls: run.pl --name x --gpu 0 LOG cmd...
    run_pl = recipe_dir / "utils" / "run.pl"
    sh([str(run_pl), "--name", "train", "--gpu", "0", "exp/train.log", "echo a | tr a b"], tmp_path)
    assert "\nb\n" in (tmp_path / "exp/train.log").read_text()


def test_slurm_pl_dry_run(recipe_dir, tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "slurm.conf").write_text((recipe_dir / "conf" / "slurm.conf").read_text())
    r = sh([str(recipe_dir / "utils" / "slurm.pl"), "--dry-run", "true", "--gpu", "1", "JOB=1:3",
            "log/x.JOB.log", "python3", "-m", "foo", "--key", "k.JOB.scp"], tmp_path)
    cmd = r.stdout.strip()
    assert cmd.startswith("sbatch ") and "--wait" in cmd and "--array=1-3" in cmd and "--gres=gpu:1" in cmd
    script = (tmp_path / "log/q/x.array.sh").read_text()
    assert "python3 -m foo --key k.2.scp" in script
    # the job script runs here too (as a Slurm array task would) and writes run.pl-style logs
    r = sh(["bash", "log/q/x.array.sh"], tmp_path, check=False,
           env={"SLURM_ARRAY_TASK_ID": "2", "PATH": "/usr/bin:/bin"})
    assert "# Ended (code 1)" in (tmp_path / "log/x.2.log").read_text()  # no module foo


# ---------------------------------------------------------------- split / filter
def test_split_scp_balanced_and_contiguous(recipe_dir, tmp_path):
    lines = [f"u{i:02d} v{i}\n" for i in range(10)]
    (tmp_path / "in.scp").write_text("".join(lines))
    outs = [f"p.{k}" for k in range(1, 4)]
    sh([str(recipe_dir / "utils/split_scp.pl"), "in.scp", *outs], tmp_path)
    parts = [(tmp_path / o).read_text().splitlines(keepends=True) for o in outs]
    assert sorted(len(p) for p in parts) == [3, 3, 4]
    assert sum(parts, []) == lines


def test_split_scp_refuses_empty_parts(recipe_dir, tmp_path):
    (tmp_path / "in.scp").write_text("a 1\nb 2\n")
    r = sh([str(recipe_dir / "utils/split_scp.pl"), "in.scp", "x1", "x2", "x3"], tmp_path, check=False)
    assert r.returncode != 0 and "use at most 2 jobs" in r.stderr


def test_split_scp_keeps_speakers_together(recipe_dir, tmp_path):
    (tmp_path / "in.scp").write_text("".join(f"s{i // 3}_u{i} x\n" for i in range(9)))
    (tmp_path / "utt2spk").write_text("".join(f"s{i // 3}_u{i} s{i // 3}\n" for i in range(9)))
    sh([str(recipe_dir / "utils/split_scp.pl"), "--utt2spk=utt2spk", "in.scp", "a", "b"], tmp_path)
    speakers = [{line.split("_")[0] for line in (tmp_path / p).read_text().splitlines()} for p in "ab"]
    assert not speakers[0] & speakers[1]


def test_filter_scp(recipe_dir, tmp_path):
    (tmp_path / "ids").write_text("b\nd\n")
    (tmp_path / "in").write_text("a 1\nb 2\nc 3\nd 4\n")
    keep = sh([str(recipe_dir / "utils/filter_scp.pl"), "ids", "in"], tmp_path).stdout
    drop = sh([str(recipe_dir / "utils/filter_scp.pl"), "--exclude", "ids", "in"], tmp_path).stdout
    assert keep == "b 2\nd 4\n" and drop == "a 1\nc 3\n"


# ---------------------------------------------------------------- fix_data_dir
def test_fix_data_dir_sorts_intersects_and_writes_spk2utt(recipe_dir, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "wav.scp").write_text("r2 /x/r2.flac\nr1 /x/r1.flac\nr3 /x/unused.flac\n")
    (d / "segments").write_text("b r2 0.0 1.0\na r1 0.0 1.5\nc r1 1.5 2.0\norphan r9 0 1\n")
    (d / "text").write_text("c Third.\na First.\nb Second!\n")
    (d / "utt2spk").write_text("a s1\nb s2\nc s1\nextra s3\n")
    r = sh([str(recipe_dir / "utils/validate_data_dir.sh"), str(d)], tmp_path, check=False)
    assert r.returncode != 0 and "not sorted" in r.stderr
    sh([str(recipe_dir / "utils/fix_data_dir.sh"), str(d)], tmp_path)
    assert (d / "text").read_text() == "a First.\nb Second!\nc Third.\n"
    assert (d / "utt2spk").read_text() == "a s1\nb s2\nc s1\n"
    assert (d / "segments").read_text().splitlines()[0] == "a r1 0.0 1.5"
    assert (d / "wav.scp").read_text() == "r1 /x/r1.flac\nr2 /x/r2.flac\n"
    assert (d / "spk2utt").read_text() == "s1 a c\ns2 b\n"
    sh([str(recipe_dir / "utils/validate_data_dir.sh"), str(d)], tmp_path)


# ---------------------------------------------------------------- local/subset_data_dir.sh
def test_subset_data_dir_spreads_keeps_files_consistent_and_names_bad_input(tmp_path, recipe_dir):
    src = tmp_path / "data" / "full"
    src.mkdir(parents=True)
    utts = [f"spk{i % 3}-utt{i:02d}" for i in range(12)]
    (src / "text").write_text("".join(f"{u} words of {u}\n" for u in sorted(utts)))
    (src / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in sorted(utts)))
    (src / "segments").write_text("".join(f"{u} rec{u[-2:]} 0.0 1.0\n" for u in sorted(utts)))
    (src / "wav.scp").write_text("".join(f"rec{u[-2:]} /audio/{u}.flac\n" for u in sorted(utts, key=lambda u: u[-2:])))
    dst = tmp_path / "data" / "sub"
    r = sh(["local/subset_data_dir.sh", str(src), "4", str(dst)], recipe_dir)
    assert "4 of 12 utterances" in r.stdout
    kept = [line.split()[0] for line in (dst / "text").read_text().splitlines()]
    assert kept == sorted(utts)[::3]  # every 3rd, from the whole set
    for name in ("utt2spk", "segments"):
        assert [line.split()[0] for line in (dst / name).read_text().splitlines()] == kept
    assert sorted(line.split()[0] for line in (dst / "wav.scp").read_text().splitlines()) == \
        sorted(f"rec{u[-2:]}" for u in kept)  # only the recordings still used
    assert (dst / "spk2utt").exists() and not (tmp_path / "data" / "sub.tmp").exists()
    assert (src / "text").read_text().count("\n") == 12  # the source is untouched
    for args, message in (([str(src), "0", str(dst)], "NUM_UTTS must be a positive integer (got '0')"),
                          ([str(tmp_path / "nowhere"), "3", str(dst)], "nowhere/text not found")):
        r = sh(["local/subset_data_dir.sh", *args], recipe_dir, check=False)
        assert r.returncode == 1 and message in r.stderr
    assert len((dst / "text").read_text().splitlines()) == 4  # a failed call leaves the old subset
