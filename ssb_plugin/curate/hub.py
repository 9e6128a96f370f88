"""`--push-to-hub`: upload a finished set (shards, manifest, card) as a hub dataset repo."""

from __future__ import annotations

from ssb_plugin.curate.config import ConfigError
from ssb_plugin.record import Manifest


def push(out: str, repo_id: str, private: bool = True, api=None) -> str:
    manifest = Manifest.load(out)
    if not manifest.extra.get("complete"):
        raise ConfigError(f"push_to_hub: {out} is not complete; resume the run before pushing")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(
        folder_path=out,
        repo_id=repo_id,
        repo_type="dataset",
        allow_patterns=["data/*.parquet", "manifest.json", "README.md"],
        commit_message=f"ssb-curate: {sum(manifest.counts.values())} problems, {manifest.counts.get('kept', 0)} kept",
    )
    return f"https://huggingface.co/datasets/{repo_id}"
