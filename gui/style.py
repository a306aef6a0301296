"""The window's look: a light, quiet style sheet; red marks problems, colour marks status."""

STYLE_SHEET = """
QMainWindow, #panel { background: #f6f7f9; }
QLabel#panelTitle { font-weight: 600; color: #3b4652; padding: 2px 2px 4px 2px; }
QLabel#help, QLabel#emptyHint { color: #6b7580; }
QLabel#emptyHint { padding: 18px 30px 6px 30px; }
QLabel#formTitle { font-size: 15px; font-weight: 600; color: #1f2933; }
QLabel#fieldProblem { color: #c62828; }
QLabel#blocker { color: #b3261e; }
QLabel#runStats { color: #3b4652; }
QLabel#preview { background: #f3f6fa; border: 1px solid #e1e6ec; border-radius: 4px; padding: 4px 6px;
                 color: #3b4652; }
QLabel#preview[bad="true"] { background: #fdecec; border-color: #f3b8b8; color: #b71c1c; }
*[problem="true"] { border: 1px solid #d93a3a; border-radius: 3px; }
QListView#pipelineCards { background: #f6f7f9; border: 1px solid #dde2e8; border-radius: 6px; }
QWidget#runBar { background: #ffffff; border: 1px solid #dde2e8; border-radius: 6px; }
QPushButton#runButton { font-weight: 600; padding: 4px 14px; }
QPushButton#primaryButton { font-weight: 600; padding: 6px 14px; }
QPushButton#backLink { color: #2f6fde; text-align: left; padding: 6px 14px 0 14px; border: none; }
QFrame#messageBar { border-radius: 6px; border: 1px solid #f3b8b8; background: #fdecec; }
QFrame#messageBar[kind="info"], QFrame#messageBar[kind="warning"] { border-color: #f0d08a; background: #fff8e5; }
QFrame#messageBar[kind="ok"] { border-color: #a8dcbc; background: #e9f7ef; }
QWidget#welcome { background: #ffffff; border: 1px solid #dde2e8; border-radius: 6px; }
QLabel#welcomeTitle { font-size: 20px; font-weight: 600; color: #1f2933; }
QLabel#welcomeText { color: #5b6672; font-size: 13px; }
QTableView { gridline-color: #e6e9ee; selection-background-color: #cfe0fc; selection-color: #1f2933; }
QHeaderView::section { background: #eef1f5; border: none; border-right: 1px solid #dde2e8;
                       border-bottom: 1px solid #dde2e8; padding: 3px 6px; font-weight: 600; color: #3b4652; }
QToolBar#mainToolbar { spacing: 4px; border: none; }
"""
