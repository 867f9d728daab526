defmodule ExESDB.Test.Api.Elixir do
  @moduledoc false
  # ExESDB.ApiConformance's driver for the Elixir API. Data goes in as
  # raw bytes (ExESDB.Test.RawSerializer) so both APIs store the same.
  alias ExESDB.{NewEvent, Snapshots, Streams}
  alias ExESDB.Schema.SnapshotRecord

  def start(context) do
    ExESDB.Test.NifBackend.start_store(
      Map.put(context, :store_opts, serializer: ExESDB.Test.RawSerializer)
    ).store
  end

  def append(s, id, expected, datas),
    do:
      Streams.append_events(
        s,
        id,
        expected,
        Enum.map(datas, &%NewEvent{event_type: "t", data: &1, metadata: ""})
      )

  def version(s, id), do: Streams.get_version(s, id)
  def exists?(s, id), do: Streams.stream_exists?(s, id)
  def delete(s, id, expected), do: Streams.delete_stream(s, id, expected)

  def read(s, id, from, count, dir) do
    with {:ok, events} <- Streams.get_events(s, id, from, count, dir),
         do: {:ok, Enum.map(events, &{&1.event_number, &1.data})}
  end

  def read_all(s, from, count, dir) do
    with {:ok, events} <- Streams.get_all_events(s, from, count, dir),
         do: {:ok, Enum.map(events, &{&1.position, &1.stream_id})}
  end

  def streams(s), do: Streams.get_streams(s)

  def put_snapshot(s, uuid, version, data) do
    Snapshots.record_snapshot(s, %SnapshotRecord{
      source_uuid: uuid,
      source_version: version,
      source_type: "T",
      data: data,
      metadata: ""
    })
  end

  def get_snapshot(s, uuid) do
    with {:ok, snap} <- Snapshots.read_snapshot(s, uuid),
         do: {:ok, {snap.source_version, snap.data}}
  end

  def delete_snapshot(s, uuid), do: Snapshots.delete_snapshot(s, uuid)
  def default_timeout, do: ExESDB.Options.resolve(store_id: :any_store).timeout
end
