"""What a Step handler gets: the dispatch it answers and the ways to report back to Loom."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from loom_migrator.client import LoomClient
from loom_migrator.dryrun import CandidateStepView
from loom_migrator.wire import DispatchStepRequest, StepStatus, StepStatusEvent

Metadata = Mapping[str, object] | None


class StepContext(CandidateStepView):
    """One dispatched Step of one Run. Every report is a StepStatusEvent posted to the Run's callback."""

    _missing_hint = "set it in the Run's inputs and retry the Step"

    def __init__(self, request: DispatchStepRequest, client: LoomClient) -> None:
        super().__init__(request.migration_id, request.step_name, request.candidate, request.config)
        self.request = request
        self._client = client
        self.reported: list[StepStatus] = []
        self.finished = False

    async def report(self, status: StepStatus | str, metadata: Metadata = None) -> None:
        """Post a status; raises LoomRejected if Loom no longer waits on this Step (the handler then stops)."""
        event = StepStatusEvent(
            step_name=self.step_name,
            candidate_id=self.candidate.id,
            status=StepStatus(status),
            metadata={key: str(value) for key, value in (metadata or {}).items()},
        )
        # Marked before posting: once Loom has the final status it may re-dispatch (Retry) at any moment.
        self.finished = self.finished or event.status.succeeded or event.status == StepStatus.FAILED
        await self._client.post_event(self.request.callback_id, event)
        self.reported.append(event.status)

    async def open(self, pr_url: str, metadata: Metadata = None) -> None:
        """A change is open for review (a pull request): the Run waits for `merged`."""
        await self.report(StepStatus.OPEN, {**(metadata or {}), "prUrl": pr_url})

    async def awaiting_review(self, instructions: str, metadata: Metadata = None) -> None:
        """An operator must Approve or Reject the Step in Loom."""
        await self.report(StepStatus.AWAITING_REVIEW, {**(metadata or {}), "instructions": instructions})

    async def merged(self, metadata: Metadata = None) -> None:
        await self.report(StepStatus.MERGED, metadata)

    async def completed(self, metadata: Metadata = None) -> None:
        await self.report(StepStatus.COMPLETED, metadata)

    async def failed(self, error: str, metadata: Metadata = None) -> None:
        await self.report(StepStatus.FAILED, {**(metadata or {}), "error": error})

    async def pull_request(
        self,
        pr_url: str,
        until_merged: Callable[[], Awaitable[Metadata]],
        metadata: Metadata = None,
    ) -> None:
        """The common shape: report `open` with the prUrl, wait until it merges, report `merged`.

        `until_merged` returns once the change is merged, optionally with more metadata (a merge
        commit, say); if it raises, the Step is reported `failed` with the error.
        """
        await self.open(pr_url, metadata)
        extra = await until_merged()
        await self.merged({**(metadata or {}), **(extra or {}), "prUrl": pr_url})
