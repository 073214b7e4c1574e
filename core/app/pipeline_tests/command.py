"""`python main.py --test [NAME...]`, `--tests PATH`, `--fix-tests`, `--junit-xml PATH`: find the tests, run the
ones asked for, print one line per test and a summary, and exit 0 (all passed), 1 (any failed) or 2 (the test
file, or the pipeline, is broken)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from xml.etree import ElementTree

from core.app.pipeline_tests.cases import Case, load_cases, tests_path_of
from core.app.pipeline_tests.runner import Result, run_case
from core.base.redact import redact
from core.pipeline.config import ConfigError, load_pipeline
from core.pipeline.problems import did_you_mean
from core.pipeline.yaml_lines import load_plain

MARKS = {"passed": "passed", "failed": "FAILED", "error": "ERROR "}


def run_tests(pipeline: Path, args: argparse.Namespace) -> int:
    """Run the pipeline's tests as the command line asks; the exit code."""
    tests_file = Path(args.tests).expanduser() if args.tests else tests_path_of(pipeline)
    if not tests_file.is_file():
        print(
            f"{tests_file}: no such test file (write it beside the pipeline, or name one with --tests PATH)",
            file=sys.stderr,
        )
        return 2
    try:
        spec = load_pipeline(pipeline)
        cases = load_cases(tests_file, spec)
    except ConfigError as exc:
        for problem in exc.problems:
            print(redact(str(problem)), file=sys.stderr)
        print(f"{len(exc.problems)} problem(s); no test was run", file=sys.stderr)
        return 2
    chosen = _chosen(cases, args.test or [])
    if chosen is None:
        return 2
    raw = load_plain(pipeline.read_text(encoding="utf-8"))
    print(f"{tests_file}: {len(chosen)} test(s) of {pipeline}")
    results = []
    for case in chosen:
        result = run_case(case, pipeline, raw, spec.name)
        results.append(result)
        where = f"stage {case.group}" if case.group else "pipeline"
        print(f"{MARKS[result.status]}  {case.name}  ({where}, {result.seconds:.1f}s)", flush=True)
        for detail in result.details:
            print("        " + redact(detail).replace("\n", "\n        "))
    passed = sum(r.status == "passed" for r in results)
    errors = sum(r.status == "error" for r in results)
    print(f"{passed} passed, {len(results) - passed} failed" + (f" ({errors} could not be run)" if errors else ""))
    if args.junit_xml:
        write_junit(Path(args.junit_xml), spec.name, results)
    if args.fix_tests:
        from core.app.pipeline_tests.fix import fix_tests

        fixed = fix_tests(tests_file, [r for r in results if r.got is not None and r.status != "error"])
        print(f"{tests_file}: wrote what {fixed} test(s) got as their expectations; review the diff")
    return 0 if passed == len(results) else 1


def _chosen(cases: list[Case], names: list[str]) -> list[Case] | None:
    if not names:
        return cases
    known = {case.name: case for case in cases}
    unknown = [name for name in names if name not in known]
    for name in unknown:
        hint = did_you_mean(name, known) or f" (the tests: {', '.join(map(repr, known))})"
        print(f"--test {name!r}: no such test{hint}", file=sys.stderr)
    return None if unknown else [known[name] for name in names]


def write_junit(path: Path, suite: str, results: list[Result]) -> None:
    """The results as JUnit XML, which CI systems read."""
    failures = sum(r.status == "failed" for r in results)
    errors = sum(r.status == "error" for r in results)
    root = ElementTree.Element("testsuites")
    node = ElementTree.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(results)),
        failures=str(failures),
        errors=str(errors),
        time=f"{sum(r.seconds for r in results):.3f}",
    )
    for result in results:
        case = ElementTree.SubElement(
            node, "testcase", classname=suite, name=result.case.name, time=f"{result.seconds:.3f}"
        )
        if result.status != "passed":
            text = redact("\n".join(result.details))
            element = ElementTree.SubElement(
                case,
                "failure" if result.status == "failed" else "error",
                message=text.splitlines()[0] if text else result.status,
            )
            element.text = text
    path.parent.mkdir(parents=True, exist_ok=True)
    ElementTree.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
