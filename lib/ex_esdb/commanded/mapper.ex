defmodule ExESDB.Commanded.Mapper do
  @moduledoc """
  Between Commanded's event and snapshot structs and ExESDB's.

  Commanded's structs are built and read by field at run time, so this
  module compiles without Commanded. With a `serializer` (Commanded's
  `serializer:` option, e.g. `Commanded.Serialization.JsonSerializer`)
  data and metadata are stored as the bytes it makes and decoded with the
  event type; without one they are stored as Erlang terms. Metadata keys
  become strings, as Commanded expects.
  """

  alias ExESDB.{EventRecord, NewEvent}
  alias ExESDB.Schema.SnapshotRecord

  @recorded Commanded.EventStore.RecordedEvent
  @snapshot Commanded.EventStore.SnapshotData

  @doc "A `Commanded.EventStore.EventData` as an `ExESDB.NewEvent`."
  @spec to_new_event(map(), module() | nil) :: NewEvent.t()
  def to_new_event(event_data, serializer \\ nil) do
    %NewEvent{
      event_type: event_data.event_type,
      data: encode(event_data.data, serializer),
      metadata: encode(stringify(event_data.metadata || %{}), serializer),
      causation_id: event_data.causation_id,
      correlation_id: event_data.correlation_id
    }
  end

  @doc """
  An `ExESDB.EventRecord` as a `Commanded.EventStore.RecordedEvent`.
  `stream_version` is the version in its stream; `event_number` is the
  global position when reading `$all` (`numbering: :all`) and, as
  Commanded numbers stream events, the stream version otherwise.
  """
  @spec to_recorded_event(EventRecord.t(), module() | nil, :all | :stream) :: struct()
  def to_recorded_event(%EventRecord{} = r, serializer \\ nil, numbering \\ :all) do
    struct(@recorded,
      event_id: r.event_id,
      event_number: if(numbering == :all, do: r.position, else: r.event_number),
      stream_id: r.stream_id,
      stream_version: r.event_number,
      causation_id: r.causation_id,
      correlation_id: r.correlation_id,
      event_type: r.event_type,
      data: decode(r.data, serializer, type: r.event_type),
      metadata: decode(r.metadata, serializer, []) || %{},
      created_at: r.created_at
    )
  end

  @doc "A `Commanded.EventStore.SnapshotData` as an `ExESDB.Schema.SnapshotRecord`."
  @spec to_snapshot_record(map(), module() | nil) :: SnapshotRecord.t()
  def to_snapshot_record(snapshot, serializer \\ nil) do
    %SnapshotRecord{
      source_uuid: snapshot.source_uuid,
      source_version: snapshot.source_version,
      source_type: snapshot.source_type,
      data: encode(snapshot.data, serializer),
      metadata: encode(stringify(snapshot.metadata || %{}), serializer)
    }
  end

  @doc "An `ExESDB.Schema.SnapshotRecord` as a `Commanded.EventStore.SnapshotData`."
  @spec to_snapshot_data(SnapshotRecord.t(), module() | nil) :: struct()
  def to_snapshot_data(%SnapshotRecord{} = r, serializer \\ nil) do
    struct(@snapshot,
      source_uuid: r.source_uuid,
      source_version: r.source_version,
      source_type: r.source_type,
      data: decode(r.data, serializer, type: r.source_type),
      metadata: decode(r.metadata, serializer, []) || %{},
      created_at: r.created_at
    )
  end

  defp encode(term, nil), do: term
  defp encode(term, serializer), do: serializer.serialize(term)

  defp decode(term, nil, _opts), do: term

  defp decode(bytes, serializer, opts) when is_binary(bytes),
    do: serializer.deserialize(bytes, opts)

  defp decode(term, _serializer, _opts), do: term

  defp stringify(map) when is_map(map) and not is_struct(map),
    do: Map.new(map, fn {k, v} -> {if(is_atom(k), do: Atom.to_string(k), else: k), v} end)

  defp stringify(other), do: other
end
