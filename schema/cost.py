"""Query cost: how many fields an operation may resolve, estimated from its document before it runs.

Every field counts 1 for each object it is resolved on. A field's children are resolved once per item
it returns:

- a field with a `first` argument returns up to `first` items (its value, a variable's or the default),
  counted at most `MAX_FIRST`;
- `registerRecords` returns one result per record sent;
- a connection (a field with `first` that is not a list) has `first` edges;
- another list returns up to `LIST_SIZES[(Type, field)]` items (lineage has one row per attribute, a
  golden record a handful of source records), else `DEFAULT_LIST_SIZE`.

Fragments are expanded (each counted once per use, computed once), `@skip`/`@include` ignored (the worst
case). Cost is linear in the number of parents, so a selection's cost per parent is computed once and
multiplied: the estimate takes time proportional to the document, whatever the cost it finds.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    FieldNode, FragmentDefinitionNode, FragmentSpreadNode, GraphQLError, GraphQLList, GraphQLNonNull,
    GraphQLObjectType, GraphQLSchema, InlineFragmentNode, IntValueNode, ListValueNode, OperationDefinitionNode,
    SelectionSetNode, Undefined, VariableNode, get_named_type,
)
from graphql.execution import ExecutionResult as GraphQLExecutionResult
from graphql.type import SchemaMetaFieldDef, TypeMetaFieldDef
from graphql.utilities import get_operation_ast
from strawberry.extensions import SchemaExtension

MAX_FIRST = 1000
DEFAULT_LIST_SIZE = 10
LIST_SIZES: dict[tuple[str, str], int] = {
    ("Customer", "lineage"): 12,  # one row per attribute at most
    ("Customer", "sourceRecords"): 5,
    ("MatchCandidate", "explanation"): 12,
    ("CustomerMatch", "explanation"): 12,
    ("RegistrationResult", "errors"): 2,
    ("Query", "sourceSystems"): 20,
}


def _list_type(type_: Any) -> bool:
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList)


class _Estimator:
    def __init__(self, schema: GraphQLSchema, fragments: Mapping[str, FragmentDefinitionNode],
                 variables: Mapping[str, Any]) -> None:
        self.schema, self.fragments, self.variables = schema, fragments, variables
        self.fragment_costs: dict[tuple[str, str, int], int] = {}
        self.variable_defaults: dict[str, Any] = {}

    def selection(self, selection_set: SelectionSetNode | None, parent: Any, page: int = 1) -> int:
        """Cost of resolving a selection set on one object of type `parent` (a connection: `page` edges)."""
        if selection_set is None:
            return 0
        total = 0
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                total += self.field(node, parent, page)
            elif isinstance(node, InlineFragmentNode):
                on = self.schema.get_type(node.type_condition.name.value) if node.type_condition else parent
                total += self.selection(node.selection_set, on or parent, page)
            elif isinstance(node, FragmentSpreadNode):
                total += self.spread(node.name.value, parent, page)
        return total

    def spread(self, name: str, parent: Any, page: int) -> int:
        key = (name, parent.name, page)
        if key not in self.fragment_costs:
            self.fragment_costs[key] = 0  # a cycle (refused by validation anyway) counts nothing more
            fragment = self.fragments.get(name)
            if fragment is not None:
                on = self.schema.get_type(fragment.type_condition.name.value) or parent
                self.fragment_costs[key] = self.selection(fragment.selection_set, on, page)
        return self.fragment_costs[key]

    def field(self, node: FieldNode, parent: Any, page: int = 1) -> int:
        name = node.name.value
        if name == "__typename":
            return 1
        if name == "__schema":
            definition = SchemaMetaFieldDef
        elif name == "__type":
            definition = TypeMetaFieldDef
        else:
            fields = getattr(parent, "fields", None) or {}
            definition = fields.get(name)
            if definition is None:
                return 1
        child = get_named_type(definition.type)
        items = self.items(node, parent, name, definition, page)
        if not _list_type(definition.type) and "first" in definition.args:  # a connection: `first` edges
            return 1 + self.selection(node.selection_set, child, items)
        return 1 + items * self.selection(node.selection_set, child)

    def items(self, node: FieldNode, parent: Any, name: str, definition: Any, page: int = 1) -> int:
        """How many objects the field returns (at most, or as estimated); a connection's page size."""
        if "first" in definition.args:
            first = self.argument(node, "first", definition)
            return max(1, min(first if isinstance(first, int) else MAX_FIRST, MAX_FIRST))
        if parent.name == "Mutation" and name == "registerRecords":
            records = self.argument(node, "records", definition)
            return max(1, len(records)) if isinstance(records, list) else DEFAULT_LIST_SIZE
        if not _list_type(definition.type):
            return 1
        if name == "edges" and parent.name.endswith("Connection"):
            return page
        return LIST_SIZES.get((parent.name, name), DEFAULT_LIST_SIZE)


    def argument(self, node: FieldNode, name: str, definition: Any) -> Any:
        """An argument's value as sent (literal or variable), else its default; lists as lists of nodes."""
        for arg in node.arguments or ():
            if arg.name.value != name:
                continue
            value = arg.value
            if isinstance(value, VariableNode):
                if value.name.value in self.variables:
                    return self.variables[value.name.value]
                default = self.variable_defaults.get(value.name.value)
                if default is None:
                    break
                value = default
            if isinstance(value, IntValueNode):
                return int(value.value)
            if isinstance(value, ListValueNode):
                return list(value.values)
            return None
        default = definition.args[name].default_value
        return None if default is Undefined else default


def query_cost(schema: GraphQLSchema, document: Any, operation_name: str | None,
               variables: Mapping[str, Any] | None) -> int:
    """The estimated cost of the operation to run, or 0 when there is none (execution reports that)."""
    operation = get_operation_ast(document, operation_name)
    if not isinstance(operation, OperationDefinitionNode):
        return 0
    root = schema.get_root_type(operation.operation)
    if not isinstance(root, GraphQLObjectType):
        return 0
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    estimator = _Estimator(schema, fragments, variables or {})
    estimator.variable_defaults = {d.variable.name.value: d.default_value
                                   for d in operation.variable_definitions or () if d.default_value is not None}
    return estimator.selection(operation.selection_set, root)


class QueryCostLimiter(SchemaExtension):
    """Refuse, before execution, an operation whose estimated cost exceeds the limit (BAD_USER_INPUT)."""

    def __init__(self, *, max_cost: int) -> None:
        self.max_cost = max_cost

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.graphql_document is not None and ctx.result is None:
            cost = query_cost(ctx.schema._schema, ctx.graphql_document, ctx.operation_name, ctx.variables)
            if cost > self.max_cost:
                ctx.result = GraphQLExecutionResult(data=None, errors=[GraphQLError(
                    f"query cost {cost} exceeds the limit of {self.max_cost}: ask for smaller pages (first), "
                    "fewer nested lists (history, lineage, sourceRecords) or fewer aliases, over several requests",
                    extensions={"code": "BAD_USER_INPUT", "cost": cost, "costLimit": self.max_cost})])
        yield
