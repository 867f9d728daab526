defmodule ExESDB.Snapshots do
  @moduledoc """
  The latest snapshot per source (an aggregate, a process manager, ...),
  keyed by `source_uuid`. Recording a snapshot replaces the previous one.

  Errors: `{:error, :snapshot_not_found}` from `read_snapshot/2`,
  `{:error, {:invalid_snapshot, term}}`, `:limit_exceeded`, `:timeout`,
  `:closed`, `:store_not_started`, storage errors.
  """

  alias ExESDB.{Native, Store}
  alias ExESDB.Schema.SnapshotRecord

  @doc "Record (replace) the snapshot of `snapshot.source_uuid`."
  @spec record_snapshot(atom(), SnapshotRecord.t()) :: :ok | {:error, term()}
  def record_snapshot(
        store,
        %SnapshotRecord{source_uuid: uuid, source_version: version, source_type: type} = snap
      )
      when is_binary(uuid) and uuid != "" and is_integer(version) and version >= 0 do
    with {:ok, s} <- Store.fetch(store) do
      type = if is_atom(type) and type != nil, do: Atom.to_string(type), else: type || ""
      data = s.serializer.serialize(snap.data)
      meta = s.serializer.serialize(snap.metadata)

      if is_binary(type),
        do:
          Native.call(s, &:ex_esdb_nif.snapshot_put(s.handle, &1, uuid, version, type, data, meta)),
        else: {:error, {:invalid_snapshot, snap}}
    end
  end

  def record_snapshot(_store, snapshot), do: {:error, {:invalid_snapshot, snapshot}}

  @doc "Read the snapshot of a source."
  @spec read_snapshot(atom(), String.t()) :: {:ok, SnapshotRecord.t()} | {:error, term()}
  def read_snapshot(store, source_uuid) when is_binary(source_uuid) and source_uuid != "" do
    with {:ok, s} <- Store.fetch(store) do
      case :ex_esdb_nif.snapshot_get(s.handle, source_uuid) do
        {:ok, {uuid, version, type, data, meta, created_us}} ->
          {:ok,
           %SnapshotRecord{
             source_uuid: uuid,
             source_version: version,
             source_type: type,
             data: s.serializer.deserialize(data, type: type),
             metadata: s.serializer.deserialize(meta, type: type),
             created_at: DateTime.from_unix!(created_us, :microsecond),
             created_epoch: created_us
           }}

        {:error, :not_found} ->
          {:error, :snapshot_not_found}

        {:error, _} = error ->
          error
      end
    end
  end

  def read_snapshot(_store, uuid), do: {:error, {:invalid_source_uuid, uuid}}

  @doc "Delete the snapshot of a source; deleting an absent one is `:ok`."
  @spec delete_snapshot(atom(), String.t()) :: :ok | {:error, term()}
  def delete_snapshot(store, source_uuid) when is_binary(source_uuid) and source_uuid != "" do
    with {:ok, s} <- Store.fetch(store) do
      case Native.call(s, &:ex_esdb_nif.snapshot_delete(s.handle, &1, source_uuid)) do
        {:error, :not_found} -> :ok
        other -> other
      end
    end
  end

  def delete_snapshot(_store, uuid), do: {:error, {:invalid_source_uuid, uuid}}
end
