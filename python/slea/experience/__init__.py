"""Experience library: facade, embedders, distillers, evolution and prompt building."""
