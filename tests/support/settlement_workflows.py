"""Copies of DunningWorkflow for the settlements patch's replay test
(tests/test_settlements.py): the workflow as it was before settlements, as
far as the `settlement_decision` signal goes, and today's handler without
its `workflow.patched` gate. Apart from the test module, because the
workflow sandbox imports a workflow's module again."""


from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from dunning import contract
    from dunning.inputs import SettlementDecisionSignal
    from dunning.transitions import settlements
    from workflows.dunning import DunningWorkflow


@workflow.defn(name=contract.WORKFLOW_TYPE)
class BeforeSettlements(DunningWorkflow):
    """A `settlement_decision` changes nothing and commands nothing (before
    settlements the SDK kept it unread, for want of a handler)."""

    @workflow.signal(name=contract.SIGNAL_SETTLEMENT_DECISION)
    def settlement_decision(self, payload: Any = None) -> None:
        return None

    def _asks_lean(self) -> bool:
        return False  # before settlements, there was no lean lifecycle either

    @workflow.run
    async def run(self, loan: Any = None) -> dict:
        return await super().run(loan)


@workflow.defn(name=contract.WORKFLOW_TYPE)
class UngatedSettlements(DunningWorkflow):
    """Today's handler without its patch: what a deploy without the gate would do."""

    @workflow.signal(name=contract.SIGNAL_SETTLEMENT_DECISION)
    def settlement_decision(self, payload: Any = None) -> None:
        self._on_signal(contract.SIGNAL_SETTLEMENT_DECISION, SettlementDecisionSignal, payload, settlements.decide)

    def _asks_lean(self) -> bool:
        return False  # replays a history from before LEAN, as today's code without the gate

    @workflow.run
    async def run(self, loan: Any = None) -> dict:
        return await super().run(loan)
