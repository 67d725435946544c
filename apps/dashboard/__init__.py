"""The ScopeWatch web dashboard (Gradio), split by job: `hub` (the feeds and recordings it runs),
`charts` and `widgets` (what it draws), `files` (what it may read off disk), `layout` (the page and
its wiring) and `serve` (access, launch, stop)."""
