defmodule ExESDB.Schema.SnapshotRecord do
  @moduledoc """
  The latest snapshot of an aggregate (or any source), keyed by
  `source_uuid`. `data` and `metadata` go through the store's serializer.
  """

  @type t :: %__MODULE__{
          source_uuid: String.t(),
          source_version: non_neg_integer(),
          source_type: String.t(),
          data: term(),
          metadata: term(),
          created_at: DateTime.t() | nil,
          created_epoch: non_neg_integer() | nil
        }

  defstruct [
    :source_uuid,
    :source_version,
    :source_type,
    :data,
    :created_at,
    :created_epoch,
    metadata: %{}
  ]
end
