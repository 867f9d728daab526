defmodule ExESDB.Snapshots do
  @moduledoc """
  The latest snapshot per source (an aggregate, a process manager, ...),
  keyed by `source_uuid`. Recording a snapshot replaces the previous one.

  Errors: `{:error, :snapshot_not_found}` from `read_snapshot/2`,
  `{:error, {:undecodable, reason}}` for stored terms that may not be
  decoded (see `ExESDB.Serializer.Term`), `{:error, {:invalid_snapshot, term}}`, `{:limit_exceeded, key, max}`, `:timeout`,
  `:closed`, `:store_not_started`, storage errors.
  """

  alias ExESDB.{EventCodec, Store}
  alias ExESDB.Schema.SnapshotRecord

  @doc "Record (replace) the snapshot of `snapshot.source_uuid`."
  @spec record_snapshot(atom(), SnapshotRecord.t()) :: :ok | {:error, term()}
  def record_snapshot(
        store,
        %SnapshotRecord{source_uuid: uuid, source_version: version, source_type: type} = snap
      )
      when is_binary(uuid) and uuid != "" and version in 0..0xFFFFFFFFFFFFFFFF//1 do
    with {:ok, s} <- Store.fetch(store) do
      type = if is_atom(type) and type != nil, do: Atom.to_string(type), else: type || ""
      data = EventCodec.payload(s.serializer, snap.data)
      meta = EventCodec.payload(s.serializer, snap.metadata)

      if is_binary(type),
        do: s.backend.submit(s, {:snapshot_put, uuid, version, type, data, meta}, []),
        else: {:error, {:invalid_snapshot, snap}}
    end
  end

  def record_snapshot(_store, snapshot), do: {:error, {:invalid_snapshot, snapshot}}

  @doc """
  Read the snapshot of a source. Options: `consistency` (`:local`, the
  default, or `:linearizable`) and `timeout`, as the reads of
  `ExESDB.Streams` (`ExESDB.ReadConsistency`).
  """
  @spec read_snapshot(atom(), String.t(), ExESDB.ReadConsistency.opts()) ::
          {:ok, SnapshotRecord.t()} | {:error, term()}
  def read_snapshot(store, source_uuid, opts \\ [])

  def read_snapshot(store, source_uuid, opts)
      when is_binary(source_uuid) and source_uuid != "" do
    with {:ok, s} <- Store.fetch(store),
         {:ok, o} <- ExESDB.ReadConsistency.options(opts, []),
         :ok <- ExESDB.ReadConsistency.before_read(s, o) do
      case s.backend.snapshot_get(s, source_uuid) do
        {:ok, {uuid, version, type, data, meta, created_us}} ->
          with {:ok, data} <- decode(s, data, type),
               {:ok, meta} <- decode(s, meta, type) do
            {:ok,
             %SnapshotRecord{
               source_uuid: uuid,
               source_version: version,
               source_type: type,
               data: data,
               metadata: meta,
               created_at: DateTime.from_unix!(created_us, :microsecond),
               created_epoch: created_us
             }}
          end

        {:error, _} = error ->
          error
      end
    end
  end

  def read_snapshot(_store, uuid, _opts), do: {:error, {:invalid_source_uuid, uuid}}

  # What was written as a term is decoded with the store's checks; bytes
  # are the serializer's (the default one hands them out as they are).
  # A payload stored before encodings were recorded (`{:legacy, bin}`)
  # was the serializer's output: for the default one, term_to_binary, so
  # it is decoded with the same checks when it is external term format at
  # all, and is its bytes when not (docs/FORMAT.md, "Payload encodings").
  defp decode(s, {:term, bin}, _type), do: s.backend.decode_term(bin)
  defp decode(%{serializer: ExESDB.Serializer.Term}, {:legacy, <<>>}, _type), do: {:ok, nil}

  defp decode(%{serializer: ExESDB.Serializer.Term} = s, {:legacy, bin}, _type) do
    case s.backend.decode_term(bin) do
      {:error, {:undecodable, :malformed}} -> {:ok, bin}
      decoded -> decoded
    end
  end

  defp decode(s, {:legacy, bin}, type), do: decode(s, bin, type)
  defp decode(%{serializer: ExESDB.Serializer.Term}, <<>>, _type), do: {:ok, nil}
  defp decode(%{serializer: ExESDB.Serializer.Term}, bin, _type), do: {:ok, bin}
  defp decode(s, bin, type), do: {:ok, s.serializer.deserialize(bin, type: type)}

  @doc "Delete the snapshot of a source; deleting an absent one is `:ok`."
  @spec delete_snapshot(atom(), String.t()) :: :ok | {:error, term()}
  def delete_snapshot(store, source_uuid) when is_binary(source_uuid) and source_uuid != "" do
    with {:ok, s} <- Store.fetch(store) do
      case s.backend.submit(s, {:snapshot_delete, source_uuid}, []) do
        {:error, :snapshot_not_found} -> :ok
        other -> other
      end
    end
  end

  def delete_snapshot(_store, uuid), do: {:error, {:invalid_source_uuid, uuid}}
end
