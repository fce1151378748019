"""The demo's stand-in for a code host: small HTML pages for a pull request, a commit and a repository."""

from __future__ import annotations

from html import escape

_STYLE = """
body { font: 14px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #1f2328; padding: 0 1rem; }
h1 { font-size: 1.4rem; } a { color: #0969da; }
.badge { display: inline-block; padding: .1rem .6rem; border-radius: 1rem; color: #fff; font-weight: 600; }
.open { background: #1a7f37; } .merged { background: #8250df; } .commit { background: #57606a; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: .75rem; overflow-x: auto;
      font: 12px/1.45 ui-monospace, monospace; }
.add { background: #dafbe1; display: block; } .del { background: #ffebe9; display: block; }
.hunk { color: #0550ae; display: block; } .meta { color: #57606a; display: block; }
table { border-collapse: collapse; } td { padding: .2rem .8rem .2rem 0; }
"""


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def render_patch(patch: str) -> str:
    """`git show` output as HTML, one coloured line per added, removed or hunk line."""
    lines = []
    for line in patch.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            css = "add"
        elif line.startswith("-") and not line.startswith("---"):
            css = "del"
        elif line.startswith("@@"):
            css = "hunk"
        elif line.startswith(("diff --git", "index ", "+++", "---", "commit ")):
            css = "meta"
        else:
            css = ""
        lines.append(f"<span class='{css}'>{escape(line)}</span>" if css else escape(line) + "\n")
    return "<pre>" + "".join(lines) + "</pre>"


def pull_request_page(candidate: str, branch: str, merged: bool, patch: str, repo_url: str) -> str:
    state = "merged" if merged else "open"
    body = (
        f"<h1>Bump base image of <a href='{escape(repo_url)}'>{escape(candidate)}</a></h1>"
        f"<p><span class='badge {state}'>{state.capitalize()}</span> "
        f"<code>{escape(branch)}</code> → <code>main</code></p>"
        f"{render_patch(patch)}"
    )
    return _page(f"{candidate}: {branch}", body)


def commit_page(candidate: str, sha: str, patch: str, repo_url: str) -> str:
    body = (
        f"<h1>Commit to <a href='{escape(repo_url)}'>{escape(candidate)}</a></h1>"
        f"<p><span class='badge commit'>main</span> <code>{escape(sha[:12])}</code></p>{render_patch(patch)}"
    )
    return _page(f"{candidate}@{sha[:12]}", body)


def repository_page(candidate: str, commits: list[tuple[str, str, str]], files: list[str], base_url: str) -> str:
    rows = "".join(
        f"<tr><td><a href='{escape(base_url)}/commits/{escape(candidate)}/{sha}'><code>{sha[:10]}</code></a></td>"
        f"<td>{escape(date)}</td><td>{escape(subject)}</td></tr>"
        for sha, date, subject in commits
    )
    listing = "".join(
        f"<li><a href='{escape(base_url)}/repos/{escape(candidate)}/files/{escape(path)}'>{escape(path)}</a></li>"
        for path in files
    )
    body = f"<h1>{escape(candidate)}</h1><h2>main</h2><table>{rows}</table><h2>Files</h2><ul>{listing}</ul>"
    return _page(candidate, body)


def index_page(candidates: list[str], base_url: str) -> str:
    items = "".join(f"<li><a href='{escape(base_url)}/repos/{escape(c)}'>{escape(c)}</a></li>" for c in candidates)
    return _page("Demo repositories", f"<h1>Demo repositories</h1><ul>{items}</ul>")
