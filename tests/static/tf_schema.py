"""Checks infra/ against the Terraform providers' published schemas, without the providers.

`terraform validate` needs the provider binaries, which cannot be downloaded here. The prebuilt
CDK Terrain provider packages on PyPI (cdktn-provider-<name>) are generated from each provider's
published schema (`terraform providers schema -json`) and bundle it as a jsii assembly: one
class per resource and data source, whose config struct lists every argument and block, whether
it is required, and (in its docs) its Terraform name. This module turns that assembly back into
a schema and checks every resource, data source and provider block of a directory against it:
unknown resource types, unknown arguments or blocks, and missing required arguments or blocks
fail, as they would fail `terraform validate`. So do references to undeclared resources, data
sources, variables or locals, and to attributes a resource type does not have (`.emial`); a
provider that is used but has no bundled schema; and a version constraint that excludes the
version the schema is from.

    python tests/static/tf_schema.py infra          # exit 1 and one line per problem

Expressions are not evaluated and types are not checked: a misspelt argument or a missing one is
caught, a string given for a number is not, nor an attribute read through a for expression's
variable.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import io
import json
import pathlib
import re
import sys
import tarfile

import hcl2  # bc-python-hcl2, installed with checkov

# Terraform source address -> the PyPI distribution bundling its schema. A provider used in
# infra/ and absent here fails the check: add its package to tests/static/requirements.txt.
SCHEMA_PACKAGES = {
    "hashicorp/google": "cdktn-provider-google",
    "hashicorp/google-beta": "cdktn-provider-google-beta",
    "hashicorp/time": "cdktn-provider-time",
    "hashicorp/random": "cdktn-provider-random",
}

# Bumped whenever the derived schema's shape changes, so an old cache is not read.
CACHE_FORMAT = 3

# Arguments and blocks Terraform itself handles, on top of each schema's own.
META = {
    "resource": {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"},
    "data": {"count", "for_each", "depends_on", "provider", "lifecycle"},
    "provider": {"alias"},
}

_LINK = re.compile(r"\{@link https://registry\.terraform\.io/providers/([\w-]+)/([\w-]+)/([\w.]+)/docs(?:/(resources|data-sources)/\w+)? ([\w-]+)\}")
_ANCHOR = re.compile(r"/docs(?:/[\w/-]*)?#(\w+) \w+#\w+\}")
_KINDS = {"cdktn.TerraformResource": "resource", "cdktn.TerraformDataSource": "data", "cdktn.TerraformProvider": "provider"}


@dataclasses.dataclass
class Block:
    """The arguments and nested blocks allowed in one block, and which of them are required."""

    arguments: dict[str, bool]
    blocks: dict[str, tuple[bool, Block]]
    # Of a resource or data source: every attribute other blocks may read (arguments and
    # computed attributes such as id, email or member).
    attributes: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "arguments": self.arguments,
            "blocks": {k: [req, b.to_json()] for k, (req, b) in self.blocks.items()},
            "attributes": self.attributes,
        }

    @classmethod
    def from_json(cls, data: dict) -> Block:
        return cls(
            data["arguments"],
            {k: (req, cls.from_json(b)) for k, (req, b) in data["blocks"].items()},
            data.get("attributes", []),
        )


@dataclasses.dataclass
class Schema:
    """One provider's schema: its version, provider block, resource types and data sources."""

    source: str
    version: str
    provider: Block
    resource: dict[str, Block]
    data: dict[str, Block]

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "version": self.version,
            "provider": self.provider.to_json(),
            "resource": {k: b.to_json() for k, b in self.resource.items()},
            "data": {k: b.to_json() for k, b in self.data.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> Schema:
        return cls(
            data["source"],
            data["version"],
            Block.from_json(data["provider"]),
            {k: Block.from_json(b) for k, b in data["resource"].items()},
            {k: Block.from_json(b) for k, b in data["data"].items()},
        )


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _nested_fqn(type_ref: dict) -> str | None:
    """The struct a property's type refers to, through unions and collections, if any."""
    if "fqn" in type_ref:
        return type_ref["fqn"]
    if "collection" in type_ref:
        return _nested_fqn(type_ref["collection"]["elementtype"])
    for member in type_ref.get("union", {}).get("types", []):
        fqn = _nested_fqn(member)
        if fqn and not fqn.startswith("cdktn."):
            return fqn
    return None


def _block(types: dict, fqn: str) -> Block:
    arguments: dict[str, bool] = {}
    blocks: dict[str, tuple[bool, Block]] = {}
    struct = types[fqn]
    for parent in struct.get("interfaces", []):
        if parent in types:  # cdktn.TerraformMetaArguments is the meta-arguments, not in this assembly
            inherited = _block(types, parent)
            arguments.update(inherited.arguments)
            blocks.update(inherited.blocks)
    for prop in struct.get("properties", []):
        docs = prop.get("docs", {})
        text = docs.get("summary", "") + " " + docs.get("remarks", "")
        anchor = _ANCHOR.search(text)
        name = anchor.group(1) if anchor else _snake(prop["name"])
        required = not prop.get("optional", False)
        nested = _nested_fqn(prop["type"])
        # Nested blocks are documented as "<name> block."; object-typed arguments are not.
        if nested in types and docs.get("summary", "").strip().endswith(" block."):
            blocks[name] = (required, _block(types, nested))
        else:
            arguments[name] = required
    return Block(arguments, blocks)


def _from_assembly(assembly: dict) -> Schema:
    types = assembly["types"]
    found: dict[str, dict] = {"resource": {}, "data": {}}
    provider = None
    source = version = None
    for cls in types.values():
        kind = _KINDS.get(cls.get("base", ""))
        if cls.get("kind") != "class" or kind is None:
            continue
        link = _LINK.search(cls.get("docs", {}).get("summary", ""))
        if link is None:
            raise SystemExit(f"{cls['fqn']}: no registry link in its docs; the assembly's format changed")
        namespace, name, version_here, _, type_name = link.groups()
        (config,) = [p["type"]["fqn"] for p in cls["initializer"]["parameters"] if p["name"] == "config"]
        block = _block(types, config)
        # The class's getters are the attributes Terraform exposes (xxxInput getters mirror the
        # arguments for cdktn's own use).
        getters = {_snake(p["name"]) for p in cls.get("properties", []) if not p.get("static") and not p["name"].endswith("Input")}
        block.attributes = sorted(getters | set(block.arguments) | set(block.blocks))
        if kind == "provider":
            provider, source, version = block, f"{namespace}/{name}", version_here
        else:
            found[kind][type_name] = block
    if provider is None:
        raise SystemExit(f"{assembly['name']}: no provider class in the assembly")
    return Schema(source, version, provider, found["resource"], found["data"])


def load_schema(source: str) -> Schema:
    """The schema of a provider (e.g. "hashicorp/google"), from its installed cdktn package.

    Derived once per package version and cached in the virtualenv (a 130 MB assembly takes
    seconds to parse)."""
    package = SCHEMA_PACKAGES.get(source)
    if package is None:
        raise LookupError(f"no package bundling the schema of {source} is known")
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise LookupError(f"{package} (the schema of {source}) is not installed: add it to tests/static/requirements.txt") from None
    cache = pathlib.Path(sys.prefix) / "share" / "sigma-tf-schema" / f"{package}-{dist.version}-{CACHE_FORMAT}.json"
    if cache.exists():
        return Schema.from_json(json.loads(cache.read_text()))
    (bundle,) = [f for f in dist.files if str(f).endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(dist.locate_file(bundle).read_bytes())) as tar:
        assembly = json.load(tar.extractfile("package/.jsii"))
    schema = _from_assembly(assembly)
    if schema.source != source:
        raise SystemExit(f"{package} bundles the schema of {schema.source}, not {source}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(schema.to_json()))
    return schema


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def allows(constraint: str, version: str) -> bool:
    """Whether a Terraform version constraint (">= 6.50, < 8.0", "~> 7.46") allows version."""

    def pad(parts: tuple[int, ...]) -> tuple[int, ...]:
        return (parts + (0, 0, 0))[:3]

    have = pad(_version(version))
    for clause in constraint.split(","):
        op, text = re.fullmatch(r"\s*(>=|<=|!=|~>|>|<|=)?\s*([\d.]+)\s*", clause).groups()
        want = _version(text)
        if op == "~>":
            # Only the rightmost given component may grow: ~> 7.46 is >= 7.46, < 8.0.
            prefix = want[:-1] or want
            ok = pad(want) <= have < pad(prefix[:-1] + (prefix[-1] + 1,))
        else:
            ok = {None: have == pad(want), "=": have == pad(want), "!=": have != pad(want), ">=": have >= pad(want), "<=": have <= pad(want), ">": have > pad(want), "<": have < pad(want)}[op]
        if not ok:
            return False
    return True


def _strip(value):
    """bc-python-hcl2 wraps every argument's value in a list."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


# data.TYPE.NAME or TYPE.NAME, an optional [index], then an optional .attribute.
_REFERENCE = re.compile(r"(?<![\w.])(data\.)?([a-z][a-z0-9]*_[a-z0-9_]+)\.([A-Za-z_][\w-]*)(\[[^\]]*\])?(?:\.([a-z_][a-z0-9_]*))?")


def _strings(value):
    """Every string in a parsed document: the expressions, as bc-python-hcl2 keeps them."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _check_block(body: dict, schema: Block, where: str, meta: set[str], problems: list[str]) -> None:
    present = set()
    for key, value in body.items():
        if key.startswith("__"):  # __start_line__, __end_line__
            continue
        if key == "dynamic":
            for dynamic in value:
                for name, spec in dynamic.items():
                    present.add(name)
                    if name not in schema.blocks:
                        problems.append(f"{where}: unknown block {name!r} (dynamic)")
                        continue
                    for content in spec.get("content", []):
                        _check_block(content, schema.blocks[name][1], f"{where}.{name}", set(), problems)
            continue
        present.add(key)
        if key in meta or key in schema.arguments:
            continue
        if key in schema.blocks:
            for instance in value if isinstance(value, list) else [value]:
                if isinstance(instance, dict):
                    _check_block(instance, schema.blocks[key][1], f"{where}.{key}", set(), problems)
            continue
        problems.append(f"{where}: unknown argument or block {key!r}")
    for name, required in schema.arguments.items():
        if required and name not in present:
            problems.append(f"{where}: missing required argument {name!r}")
    for name, (required, _) in schema.blocks.items():
        if required and name not in present:
            problems.append(f"{where}: missing required block {name!r}")


def check(directory: pathlib.Path, schemas: dict[str, Schema] | None = None) -> tuple[list[str], dict[str, Schema]]:
    """Problems in the .tf files of directory, and the schemas they were checked against."""
    documents = []
    for path in sorted(directory.glob("*.tf")):
        with path.open() as f:
            documents.append((path, hcl2.load(f)))

    # Local provider names -> source addresses, from required_providers.
    sources: dict[str, tuple[str, str | None]] = {}
    for _, doc in documents:
        for terraform in doc.get("terraform", []):
            for required in terraform.get("required_providers", []):
                for local_name, spec in required.items():
                    spec = _strip(spec)
                    sources[local_name] = (spec["source"].removeprefix("registry.terraform.io/"), spec.get("version"))

    schemas = dict(schemas or {})
    problems: list[str] = []
    constraints_checked: set[str] = set()

    def schema_for(local_name: str, where: str) -> Schema | None:
        if local_name not in sources:
            problems.append(f"{where}: provider {local_name!r} is not in required_providers")
            return None
        source, constraint = sources[local_name]
        if source not in schemas:
            try:
                schemas[source] = load_schema(source)
            except LookupError as e:
                problems.append(f"{where}: {e}")
                schemas[source] = None
        schema = schemas[source]
        if schema is not None and local_name not in constraints_checked:
            constraints_checked.add(local_name)
            if constraint and not allows(constraint, schema.version):
                problems.append(f"required_providers.{local_name}: {constraint!r} excludes {schema.version}, the version whose schema is checked")
        return schema

    declared = {
        (kind, type_name, name)
        for _, doc in documents
        for kind in ("resource", "data")
        for entry in doc.get(kind, [])
        for type_name, instances in entry.items()
        for name in instances
    }
    variables = {name for _, doc in documents for entry in doc.get("variable", []) for name in entry}
    locals_ = {name for _, doc in documents for entry in doc.get("locals", []) for name in entry if not name.startswith("__")}

    checked: dict[tuple[str, str], Block] = {}  # (kind, type) -> its schema, from the provider it uses
    for path, doc in documents:
        for kind in ("resource", "data"):
            for entry in doc.get(kind, []):
                for type_name, instances in entry.items():
                    for name, body in instances.items():
                        where = f"{path.name}:{body.get('__start_line__', '?')}: {'data.' if kind == 'data' else ''}{type_name}.{name}"
                        provider = _strip(body.get("provider", type_name.split("_")[0]))
                        provider = str(provider).removeprefix("${").removesuffix("}").split(".")[0]
                        schema = schema_for(provider, where)
                        if schema is None:
                            continue
                        types = schema.resource if kind == "resource" else schema.data
                        if type_name not in types:
                            problems.append(f"{where}: {schema.source} {schema.version} has no {'data source' if kind == 'data' else 'resource type'} {type_name!r}")
                            continue
                        _check_block(body, types[type_name], where, META[kind], problems)
                        checked[(kind, type_name)] = types[type_name]
        for entry in doc.get("provider", []):
            for local_name, body in entry.items():
                where = f"{path.name}:{body.get('__start_line__', '?')}: provider {local_name}"
                schema = schema_for(local_name, where)
                if schema is not None:
                    _check_block(body, schema.provider, where, META["provider"], problems)
    for path, doc in documents:
        # moved blocks name addresses that no longer exist, on purpose.
        for expression in _strings({k: v for k, v in doc.items() if k not in ("moved", "removed", "import")}):
            for match in _REFERENCE.finditer(expression):
                data, type_name, name, attribute = match.group(1), match.group(2), match.group(3), match.group(5)
                if type_name.split("_")[0] not in sources:
                    continue
                kind = "data" if data else "resource"
                label = f"{'data.' if data else ''}{type_name}.{name}"
                if (kind, type_name, name) not in declared:
                    problems.append(f"{path.name}: reference to undeclared {label}")
                    continue
                if attribute is None:
                    continue
                block = checked.get((kind, type_name))
                if block is not None and attribute not in block.attributes:
                    problems.append(f"{path.name}: {label} has no attribute {attribute!r}")
            for prefix, names, what in (("var", variables, "variable"), ("local", locals_, "local value")):
                for name in re.findall(rf"(?<![\w.]){prefix}\.([A-Za-z_][\w-]*)", expression):
                    if name not in names:
                        problems.append(f"{path.name}: reference to undeclared {what} {prefix}.{name}")
    return problems, schemas


def main() -> None:
    directory = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "infra")
    problems, schemas = check(directory)
    for problem in problems:
        print(problem, file=sys.stderr)
    used = ", ".join(f"{s.source} {s.version}" for s in schemas.values() if s)
    if problems:
        sys.exit(f"{len(problems)} problem(s) against the provider schemas ({used})")
    print(f"every resource, data source and provider block matches the schemas of {used}")


if __name__ == "__main__":
    main()
