"""A complete Migrator: greets every README. Run: LOOM_URL=http://localhost:3000 python -m examples.hello_migrator"""

from loom_migrator import Candidate, DryRunContext, FileDiff, Migrator, StepContext, file_diff

migrator = Migrator("hello", "Say hello", "Add a greeting to every README.", inputs={"greeting": "Greeting"})
READMES = {"checkout": "# checkout\n", "billing": "# billing\n", "search": "# search\n"}


def greeted(readme: str, greeting: str) -> str:
    return f"{readme}\n{greeting}!\n"


@migrator.discover
def discover() -> list[Candidate]:
    return [Candidate(id=name, kind="service", metadata={"team": "web"}) for name in READMES]


@migrator.step("add-greeting", description="Open a pull request that appends the greeting to README.md")
async def add_greeting(ctx: StepContext) -> None:
    async def merge() -> None:  # a real Migrator would wait here until the code host merges the PR
        READMES[ctx.candidate.id] = greeted(READMES[ctx.candidate.id], ctx.require("greeting"))

    await ctx.pull_request(f"https://git.example/{ctx.candidate.id}/pull/1", until_merged=merge)


@migrator.dry_run("add-greeting")
def preview(ctx: DryRunContext) -> list[FileDiff | None]:
    before = READMES[ctx.candidate.id]
    return [file_diff("README.md", before, greeted(before, ctx.require("greeting")), repo=ctx.candidate.id)]


migrator.manual_review("check-readme", "Read the README of {id}: does it say {greeting}? Then Approve.")

if __name__ == "__main__":
    migrator.run(port=8060)
