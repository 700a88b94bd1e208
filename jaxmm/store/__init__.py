"""Durable records in SQLite (embedded default) or PostgreSQL: fills, orders, positions,
configuration, prices, daily PnL, events and risk records. See docs/persistence.md.
"""

from ._migrate import SchemaMismatch as SchemaMismatch
from ._migrate import current_revision as current_revision
from ._migrate import downgrade as downgrade
from ._migrate import head_revision as head_revision
from ._migrate import upgrade as upgrade
from ._records import ConfigVersion as ConfigVersion
from ._records import DailyPnl as DailyPnl
from ._records import FillRecord as FillRecord
from ._records import OrderRecord as OrderRecord
from ._records import PositionSnapshot as PositionSnapshot
from ._records import RiskRecord as RiskRecord
from ._repo import PG_COPY_MIN as PG_COPY_MIN
from ._repo import Discrepancy as Discrepancy
from ._repo import FillSink as FillSink
from ._repo import Store as Store
from ._repo import default_url as default_url
from ._writer import FillWriter as FillWriter
from ._writer import WriterBackpressure as WriterBackpressure
