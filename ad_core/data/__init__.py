"""Loading tables, proposing column roles, preprocessing to a float matrix, sample sets.

    df = load_table("data.csv")              # or bytes, or an uploaded file object
    schema = infer_schema(df)                # proposed roles; override with with_role
    prep = Preprocessor(scaling="standard")
    X = prep.fit_transform(df, schema)       # float32, C-contiguous
    y = ground_truth(df, schema)             # 0/1 (1 = anomaly), -1 unknown, or None
    keys = row_keys(df, schema)              # stable string key per row

Every problem with the data raises ``DataError`` with a message meant for the analyst.
"""

from ad_core.data.errors import DataError
from ad_core.data.loaders import describe_formats, load_table
from ad_core.data.preprocess import CATEGORICAL_MISSING, IMPUTES, SCALINGS, Preprocessor
from ad_core.data.samples import (
    SampleInfo,
    get_sample_info,
    list_samples,
    load_sample,
    sample_schema,
)
from ad_core.data.schema import (
    ROLES,
    Schema,
    ground_truth,
    infer_schema,
    propose_normal_values,
    row_keys,
)

__all__ = [
    "CATEGORICAL_MISSING",
    "DataError",
    "IMPUTES",
    "Preprocessor",
    "ROLES",
    "SCALINGS",
    "SampleInfo",
    "Schema",
    "describe_formats",
    "get_sample_info",
    "ground_truth",
    "infer_schema",
    "list_samples",
    "load_sample",
    "load_table",
    "propose_normal_values",
    "row_keys",
    "sample_schema",
]
