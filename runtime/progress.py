"""A progress bar for long loops: tqdm when installed, otherwise none."""


def progress(items, desc: str = "utterances"):
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, unit="utt")
