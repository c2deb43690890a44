"""The check every command-line test of user mistakes shares."""

from invertible.cli.main import main


def assert_one_line_errors(cases: dict[str, list[str]], capsys) -> None:
    """Each ``argv`` in ``cases`` exits 2 with exactly one ``invertible: error:`` line."""
    for name, argv in cases.items():
        capsys.readouterr()
        assert main(argv) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("invertible: error: "), (name, err)
        assert "Traceback" not in err[0]
