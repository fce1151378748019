"""Which ended Runs wake a rollout: only a Migration with a rollout policy can have one, so the others cost a read,
not a signal to Temporal per Run. A Yes is kept; a No is asked again, as a policy saved a moment later may come with
a rollout that waits on the next Run's end."""

from __future__ import annotations

from dataclasses import dataclass, field

from loom_backend.execution.activities import RunActivities
from loom_backend.migrator_client import HttpMigratorNotifier


@dataclass
class Policies:
    """The read model as the activity asks it: which Migrations have a rollout policy."""

    with_policy: set[str] = field(default_factory=set)
    asked: list[str] = field(default_factory=list)

    def has_rollout_policy(self, migration_id: str) -> bool:
        self.asked.append(migration_id)
        return migration_id in self.with_policy


async def test_only_migrations_with_a_rollout_policy_may_have_a_rollout() -> None:
    store = Policies(with_policy={"rolled-out"})
    runs = RunActivities(store, HttpMigratorNotifier())  # type: ignore[arg-type]
    for _ in range(20):  # Runs ending one after another
        assert await runs._may_have_rollout("rolled-out")
        assert not await runs._may_have_rollout("plain")
    assert store.asked == ["rolled-out"] + ["plain"] * 20, "a Yes is kept, a No asked again"

    store.with_policy.add("plain")  # an operator saves a policy: the next Run's end sees it
    assert await runs._may_have_rollout("plain")
    assert await runs._may_have_rollout("plain")
    assert store.asked.count("plain") == 21
