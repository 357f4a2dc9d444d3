"""The ingest as plain Beam PTransforms (used by the TFX executor and `funnel ingest`).

    files -> ParseLogFile -> (items) BuildCatalog -------------------------+ side inputs
                          -> (events) unknown items quarantined, items coded |
                               -> impression ids by id hash -> duplicates ("losers")
                               -> hourly item counts (less the losers') -> ItemStats
                               -> frames by user hash -> BuildShardExamples -> train / eval
                                  (which quarantines the losers it holds)
    every step also emits quarantine records and counters, merged into one report.

Elements are whole files or shards (DataFrames), not single records: Beam's
per-element cost would otherwise dominate on a 2-core machine, and the shard count
(`IngestConfig.num_shards`) keeps each element small enough for any worker. The parsed
events feed every consumer in the parsing stage and cross a stage boundary once, in
the shuffle by user: each crossing of all events costs ~1 s of the ~17 s a million
impressions take on 2 cores (measured).
"""

import collections
import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence

import apache_beam as beam
import numpy as np
import pandas as pd

from components.ingest import catalog as catalog_lib
from components.ingest import duplicates, examples, files, item_stats, packing, reader
from components.ingest.config import IngestConfig
from components.ingest.contract import CONTRACT, LogFile
from components.ingest.tfrecord_sink import WriteTFRecords, batches
from components.ingest.window import DateWindow, date_of, date_window, last_full_day
from components.ingest.window import day_counts as day_counts_of
from models import features

QUARANTINE = "quarantine"
COUNTS = "counts"
EVAL = "eval"
OUT_OF_WINDOW = "out_of_window"  # counter suffix: records read outside a daily run's window


def merge_counts(counters):
    total = collections.Counter()
    for c in counters:
        total.update(c)
    return dict(total)


def _file_outputs(parsed: reader.ParsedFile):
    """A parsed file's quarantine records and counters, as tagged outputs."""
    for q in parsed.quarantine:
        yield beam.pvalue.TaggedOutput(QUARANTINE, q)
    yield beam.pvalue.TaggedOutput(COUNTS, reader.file_counts(parsed))


# Files under SMALL_FILE_BYTES are parsed together, up to BATCH_FILES files or BATCH_BYTES per
# batch: one element, one Arrow parse and one frame per batch. A log written as 10,000 files of
# one record costs 12.9 ms a file parsed alone (measured), and as many elements downstream. Beam
# has no such batching for whole-file reads (its text sources make an element per line), so it is
# written here. Larger files stay one element each, so big logs keep their parallelism.
SMALL_FILE_BYTES = 1 << 20
BATCH_BYTES = 4 << 20
BATCH_FILES = 2_000


def file_batches(log_files: Sequence[LogFile]) -> List[List[LogFile]]:
    """The units the events are parsed in, in listing order: a batch of consecutive small files
    of one log, or one file (large, or of unknown size)."""
    batched, current, current_bytes = [], [], 0
    for log_file in log_files:
        small = 0 <= log_file.size < SMALL_FILE_BYTES
        if current and (not small or current[0].log != log_file.log or len(current) >= BATCH_FILES
                        or current_bytes + log_file.size > BATCH_BYTES):
            batched.append(current)
            current, current_bytes = [], 0
        if small:
            current.append(log_file)
            current_bytes += log_file.size
        else:
            batched.append([log_file])
    return batched + ([current] if current else [])


class _ParseFiles(beam.DoFn):
    """Parses a batch of events files of one log (`file_batches`), counts and drops its records
    outside a daily run's window, codes its items and quarantines the unknown ones. Yields
    (log, frame)."""

    def __init__(self, window: Optional[DateWindow]):
        self._window = window

    def process(self, log_files: List[LogFile], catalog):
        parsed = reader.read_log_files(log_files)
        if self._window is not None:
            inside = self._window.keeps(parsed.log, parsed.rows[features.TS].to_numpy())
            yield beam.pvalue.TaggedOutput(COUNTS, {f"{parsed.log}.{OUT_OF_WINDOW}": int((~inside).sum())})
            if not inside.all():
                parsed = dataclasses.replace(parsed, rows=parsed.rows[inside].reset_index(drop=True))
        parsed = reader.code_items(parsed, catalog.ids)
        yield from _file_outputs(parsed)
        yield parsed.log, parsed.rows


def _build_catalog(item_files: List[LogFile], paths: Sequence[str]):
    """Reads every items file in one step (the catalog is one side input, small by nature)."""
    frames = []
    for parsed in map(reader.read_log_file, item_files):
        yield from _file_outputs(parsed)
        frames.append(parsed.rows)
    catalog, quarantine = catalog_lib.build_catalog(frames, paths)
    for q in quarantine:
        yield beam.pvalue.TaggedOutput(QUARANTINE, q)
    yield beam.pvalue.TaggedOutput(COUNTS, {"items.quarantined.duplicate_item_id": len(quarantine)})
    yield catalog


def _empty_frames(log: str) -> pd.DataFrame:
    spec = CONTRACT[log]
    frame = pd.DataFrame({f.name: pd.Series(dtype=np.int64 if f.type == "int" else object if f.type == "string" else np.float64) for f in spec.fields})
    frame[reader.FILE_COLUMN] = pd.Series(dtype=np.int32)
    frame[reader.ROW_COLUMN] = pd.Series(dtype=np.int64)
    frame[reader.ITEM_CODE_COLUMN] = pd.Series(dtype=np.int64)
    return frame


def _shard_by_user(element, num_shards: int):
    """(shard, (log, packed frame part)) for each user shard of a file's events. The item_id
    stays behind: the example builder reads item codes, and the catalog gives ids back."""
    log, frame = element
    if frame.empty:
        return
    shards = duplicates.stable_shard(frame[features.USER_ID], num_shards)
    for shard, part in frame.groupby(shards, sort=True):
        yield int(shard), (log, packing.pack(part, drop=[features.ITEM_ID]))


def _item_partials(element):
    log, frame = element
    return item_stats.partial_counts(log, frame[reader.ITEM_CODE_COLUMN].to_numpy(), frame[features.TS].to_numpy())


def _loser_partials(losers: pd.DataFrame):
    """Counts to take away from the item statistics: duplicates were counted when parsed."""
    return item_stats.partial_counts("impressions", losers[reader.ITEM_CODE_COLUMN].to_numpy(),
                                     losers[features.TS].to_numpy(), sign=-1)


class _BuildShardExamples(beam.DoFn):
    def __init__(self, config: IngestConfig, log_files: Sequence[LogFile]):
        self._config = config
        self._window = date_window(config)
        self._files = {f.index: f for f in log_files}

    def _quarantine(self, impressions: pd.DataFrame, lost: np.ndarray, catalog, reason: str, detail=None):
        """Drops the impression records of mask `lost`; returns the rest and the quarantine
        records of the dropped (item ids restored), with the detail given or their id."""
        if not lost.any():
            return impressions, []
        dropped = impressions[lost].assign(**{
            features.ITEM_ID: catalog.ids.to_numpy()[impressions.loc[lost, reader.ITEM_CODE_COLUMN].to_numpy()]})
        if detail is not None:
            dropped = dropped.assign(_detail=detail)
        quarantine = reader.quarantine_by_file(dropped, self._files.__getitem__, reason,
                                               features.IMPRESSION_ID if detail is None else "_detail")
        return impressions[~lost].reset_index(drop=True), quarantine

    def process(self, element, catalog, stats, loser_keys, day_counts):
        """`loser_keys`: record keys of duplicates, an array per id shard; `day_counts`: the
        impressions per day of each file. (Side inputs as lists: a global combine would add
        two stages each, ~0.1 s on the local runner.)"""
        _, packed_parts = element
        losers = np.concatenate([np.zeros(0, np.int64), *loser_keys])
        by_log: Dict[str, list] = collections.defaultdict(list)
        for log, packed in packed_parts:
            by_log[log].append(packed)
        frames = {log: packing.unpack(by_log[log], _empty_frames(log)) for log in examples.EVENT_LOGS}
        impressions = frames["impressions"]
        # Every occurrence of an id but the first (in file order) is a duplicate.
        impressions, quarantine = self._quarantine(
            impressions, np.isin(duplicates.record_keys(impressions), losers), catalog, reader.DUPLICATE_IMPRESSION_ID)
        window = self._window
        if window is None:  # the last eval_days days with impressions
            last_day = last_full_day(day_counts)
            eval_start_day = last_day - self._config.eval_days + 1
            impressions, late = self._quarantine(
                impressions, impressions[features.TS].to_numpy() // features.DAY_SECONDS > last_day, catalog,
                reader.OUT_OF_RANGE, f"ts after {date_of(last_day)}, the last day of impressions")
        else:
            eval_start_day, late = window.eval_start_day, []
        frames["impressions"] = impressions
        for q in quarantine + late:
            yield beam.pvalue.TaggedOutput(QUARANTINE, q)
        yield beam.pvalue.TaggedOutput(COUNTS, {"impressions.quarantined.duplicate_impression_id": len(quarantine),
                                                "impressions.quarantined.out_of_range": len(late)})
        train, evaluation, counts = examples.build_examples(
            frames, catalog, stats, eval_start_day, self._config,
            first_example_day=None if window is None else window.first_train_day)
        yield beam.pvalue.TaggedOutput(COUNTS, counts)
        for batch in batches(evaluation):
            yield beam.pvalue.TaggedOutput(EVAL, batch)
        yield from batches(train)


class IngestLogs(beam.PTransform):
    """Logs files -> {"train", "eval": lists of serialized tf.Examples (up to
    tfrecord_sink.RECORDS_PER_ELEMENT each), "quarantine": dicts, "counts": one dict of counters}."""

    def __init__(self, log_files: Sequence[LogFile], config: IngestConfig):
        super().__init__()
        self._files = list(log_files)
        self._config = config

    def expand(self, pbegin):
        paths = [f.path for f in self._files]
        item_files = [f for f in self._files if f.log == "items"]
        event_files = [f for f in self._files if f.log != "items"]
        p = pbegin.pipeline

        catalog = (p | "ItemFiles" >> beam.Create([item_files])
                   | "BuildCatalog" >> beam.FlatMap(_build_catalog, paths).with_outputs(QUARANTINE, COUNTS, main="catalog"))
        catalog_side = beam.pvalue.AsSingleton(catalog.catalog)

        events = (p | "EventFiles" >> beam.Create(file_batches(event_files))  # Create spreads them over workers
                  | "ParseEvents" >> beam.ParDo(_ParseFiles(date_window(self._config)), catalog_side).with_outputs(QUARANTINE, COUNTS, main="rows"))
        impressions = events.rows | "Impressions" >> beam.Filter(lambda e: e[0] == "impressions")

        losers = (impressions
                  | "ShardIds" >> beam.FlatMap(lambda e, n: duplicates.shard_impression_ids(e[1], n), self._config.num_shards)
                  | "GroupIds" >> beam.GroupByKey()
                  | "FindDuplicates" >> beam.Map(lambda kv: duplicates.find_losers(kv[1])))
        loser_keys = losers | "LoserKeys" >> beam.Map(duplicates.record_keys)
        stats = ((events.rows | "ItemCounts" >> beam.Map(_item_partials),
                  losers | "LoserCounts" >> beam.Map(_loser_partials))
                 | "AllItemCounts" >> beam.Flatten()
                 # No default for an empty input (there are always events files): it would add a stage.
                 | "ItemStats" >> beam.CombineGlobally(item_stats.CombineItemStats()).without_defaults())
        day_counts = impressions | "DayCounts" >> beam.Map(lambda e: day_counts_of(e[1][features.TS].to_numpy()))

        built = (events.rows
                 | "ByUser" >> beam.FlatMap(_shard_by_user, self._config.num_shards)
                 | "GroupUsers" >> beam.GroupByKey()
                 | "BuildExamples" >> beam.ParDo(
                     _BuildShardExamples(self._config, self._files), catalog_side, beam.pvalue.AsSingleton(stats),
                     beam.pvalue.AsList(loser_keys), beam.pvalue.AsList(day_counts))
                 .with_outputs(QUARANTINE, COUNTS, EVAL, main="train"))

        quarantine = ((catalog[QUARANTINE], events[QUARANTINE], built[QUARANTINE])
                      | "AllQuarantine" >> beam.Flatten())
        counts = ((catalog[COUNTS], events[COUNTS], built[COUNTS])
                  | "AllCounts" >> beam.Flatten()  # never empty: the catalog always counts
                  | "SumCounts" >> beam.CombineGlobally(merge_counts).without_defaults())
        return {features.TRAIN_SPLIT: built.train, features.EVAL_SPLIT: built[EVAL],
                QUARANTINE: quarantine, COUNTS: counts}


class WriteIngestOutputs(beam.PTransform):
    """Writes the splits as TFRecords under `examples_dir/Split-<name>/`, the quarantine
    as JSON Lines under `quarantine_dir/`, and the counters as `counts_path`."""

    def __init__(self, examples_dir: str, quarantine_dir: str, counts_path: str, compression_level: int):
        super().__init__()
        self._examples_dir, self._quarantine_dir = examples_dir, quarantine_dir
        self._counts_path, self._compression_level = counts_path, compression_level

    def expand(self, outputs):
        for split in (features.TRAIN_SPLIT, features.EVAL_SPLIT):
            _ = outputs[split] | f"Write{split.title()}" >> WriteTFRecords(
                os.path.join(self._examples_dir, f"Split-{split}", "data_tfrecord"), self._compression_level)
        _ = (outputs[QUARANTINE] | "QuarantineJson" >> beam.Map(json.dumps, ensure_ascii=False)
             | "WriteQuarantine" >> beam.io.WriteToText(
                 os.path.join(self._quarantine_dir, "quarantine"), file_name_suffix=".jsonl"))
        return outputs[COUNTS] | "WriteCounts" >> beam.Map(_write_json, self._counts_path)


def _write_json(value, path: str) -> None:
    """Writes one small JSON file from the single element that holds it (a Beam file sink
    would add five stages, ~0.1 s on the local runner, for it)."""
    files.write_json(value, path, sort_keys=True)
