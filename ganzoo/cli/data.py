"""`ganzoo data`: list the dataset catalog and download named datasets into the cache.

Registered on the main group in ganzoo.cli, which turns a UserError into one
"Error: ..." line. The catalog module is imported inside each command so that
`ganzoo --help` does not load urllib.
"""

from __future__ import annotations

import click


@click.group()
def data():
    """Named datasets: what the catalog offers, and downloads into the cache."""


@data.command("list")
def list_cmd():
    """Every catalog dataset, its download size, and whether it is already in the cache."""
    from ..data.catalog import catalog_rows, ganzoo_home

    rows = catalog_rows()
    header = ("NAME", "SIZE", "CACHED")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(2)]
    click.echo(f"datasets are cached in {ganzoo_home() / 'datasets'} (set GANZOO_HOME to move it)")
    click.echo(f"{header[0]:<{widths[0]}}  {header[1]:>{widths[1]}}  {header[2]}")
    for row in rows:
        click.echo(f"{row.name:<{widths[0]}}  {row.size:>{widths[1]}}  {row.cached}")


@data.command()
@click.argument("name")
@click.option("--force", is_flag=True, help="Download and extract again even if the dataset is cached.")
def download(name, force):
    """Download NAME, verify its size and sha256, and extract it into the cache."""
    from ..data.catalog import dataset_dir, ensure_dataset, get_entry, is_cached

    entry = get_entry(name)
    if is_cached(entry) and not force:
        click.echo(f"{entry.name} is already cached in {dataset_dir(entry.name)} (--force downloads it again)")
        return
    path = ensure_dataset(entry.name, progress=True, force=force)
    click.echo(f"{entry.name} is ready in {path}")
