import re

from hypothesis import given
from hypothesis import strategies as st

from gateway import naming

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Docker reference path components.
IMAGE_COMPONENT = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*$")

names = st.text(min_size=1, max_size=120)
paths = st.builds(lambda stem: stem + ".ipynb", st.text(min_size=1, max_size=150))


def names_of(project: str, path: str) -> naming.NotebookNames:
    return naming.notebook_names("nbgw", "registry.example.org:5000", project, path)


def test_clean_names_are_kept_readable() -> None:
    names = names_of("climate", "intro.ipynb")
    assert names.host_label == "intro--climate"
    assert names.container == "nbgw-intro--climate"
    assert names.image_repository == "registry.example.org:5000/nbgw/climate/intro"


def test_other_names_get_a_slug_and_a_hash() -> None:
    label = names_of("genomics", "Análise de dados.ipynb").notebook_label
    assert re.fullmatch(r"analise-de-dados-[0-9a-f]{8}", label)
    # Case alone distinguishes two notebooks, so it must distinguish their labels.
    assert names_of("p", "Intro.ipynb").host_label != names_of("p", "intro.ipynb").host_label


@given(names, paths)
def test_every_name_is_a_valid_dns_label(project: str, path: str) -> None:
    result = names_of(project, path)
    assert DNS_LABEL.fullmatch(result.host_label) and len(result.host_label) <= 63
    assert DNS_LABEL.fullmatch(result.container) and len(result.container) <= 63
    notebook_part, project_part = result.host_label.split("--")
    assert "--" not in notebook_part and "--" not in project_part
    assert IMAGE_COMPONENT.fullmatch(result.project_label)
    assert IMAGE_COMPONENT.fullmatch(result.notebook_label)


@given(st.lists(st.tuples(names, paths), min_size=2, max_size=30, unique=True))
def test_different_notebooks_never_share_a_name(pairs: list[tuple[str, str]]) -> None:
    labels = [names_of(project, path).host_label for project, path in pairs]
    containers = [names_of(project, path).container for project, path in pairs]
    assert len(set(labels)) == len(pairs)
    assert len(set(containers)) == len(pairs)


@given(names)
def test_labels_are_deterministic(name: str) -> None:
    assert naming.dns_label(name) == naming.dns_label(name)
    assert naming.dns_label(naming.dns_label(name)) == naming.dns_label(name)


def test_a_trailing_newline_never_survives_into_a_label() -> None:
    # A "$"-anchored check once let "intro\n" through as a clean label.
    assert naming.dns_label("intro\n") != "intro\n"
    assert DNS_LABEL.fullmatch(names_of("p\n", "x\n.ipynb").host_label)


def test_fit_keeps_short_names_and_shortens_long_ones_uniquely() -> None:
    assert naming.fit("short") == "short"
    a, b = naming.fit("x" * 70 + "a"), naming.fit("x" * 70 + "b")
    assert len(a) == len(b) == 63 and a != b


def test_public_url_omits_default_ports() -> None:
    assert naming.public_url("a--b", "example.org", "https", 443) == "https://a--b.example.org/"
    assert naming.public_url("a--b", "localhost", "http", 8080) == "http://a--b.localhost:8080/"
    assert naming.public_url("a--b", "example.org", "http", None) == "http://a--b.example.org/"


@given(names, names, names, names, st.text(alphabet="0123456789abcdef", min_size=40, max_size=40))
def test_server_names_are_dns_labels_apart_from_published_hosts(
    user: str, namespace: str, project: str, branch: str, commit: str
) -> None:
    name = naming.server_name(user, namespace, project, branch, commit)
    assert DNS_LABEL.fullmatch(name) and len(name) <= 63
    assert "--" not in name  # published hosts always contain "--"


def test_each_user_and_commit_gets_its_own_server() -> None:
    commit = "a" * 40
    mine = naming.server_name("alice", "group", "analysis", "main", commit)
    assert mine.startswith("alice-analysis-aaaaaaaa-")
    assert mine != naming.server_name("bob", "group", "analysis", "main", commit)
    assert mine != naming.server_name("alice", "group", "analysis", "main", "b" * 40)
    assert mine != naming.server_name("alice", "other", "analysis", "main", commit)
    assert mine == naming.server_name("alice", "group", "analysis", "main", commit)


VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # what Docker accepts
owners = st.tuples(st.integers(1, 10**9), st.text(min_size=1), st.text(min_size=1))


@given(owners, owners, st.text(min_size=1))
def test_work_areas_are_volume_names_never_shared_by_two_users_or_projects(
    one: tuple[int, str, str], other: tuple[int, str, str], username: str
) -> None:
    first = naming.work_volume("nbgw", one[0], username, one[1], one[2])
    second = naming.work_volume("nbgw", other[0], username, other[1], other[2])
    assert VOLUME_NAME.fullmatch(first) and first.startswith("nbgw-work-")
    same = (one[0], one[1].lower(), one[2].lower()) == (
        other[0],
        other[1].lower(),
        other[2].lower(),
    )
    assert (first == second) == same


def test_paths_are_not_case_sensitive_for_a_work_area() -> None:
    assert naming.work_volume("nbgw", 7, "alice", "Group", "Analysis") == naming.work_volume(
        "nbgw", 7, "alice", "group", "analysis"
    )
