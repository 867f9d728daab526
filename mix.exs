defmodule ExESDB.MixProject do
  use Mix.Project

  def project do
    [
      app: :ex_esdb,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      deps: []
    ]
  end

  def application do
    [extra_applications: [:logger]]
  end
end
